//! `[internal]`: the listener of the internal API and who may call it.

use super::*;

impl Builder<'_> {
    pub(super) fn internal(
        &self,
        i: RawInternal,
        server: &ServerConfig,
        admin: Option<&AdminConfig>,
    ) -> Result<InternalConfig> {
        let listen = match &i.listen {
            Some(listen) => self.addr("internal.listen", listen)?,
            None => defaults::INTERNAL_LISTEN.parse().expect("a valid default"),
        };
        // Its own socket, never the main one (port 0: each gets its own).
        let taken = std::iter::once(("server.listen", server.listen))
            .chain(admin.map(|a| ("admin.listen", a.listen)));
        for (key, addr) in taken {
            if listen.port() != 0 && listen == addr {
                return Err(self.err(
                    "internal.listen",
                    format!("{listen} is also {key}: the internal API needs its own address"),
                ));
            }
        }
        let allow = match i.allow {
            Some(list) => list
                .into_iter()
                .map(|p| parse_net(&p.0).map_err(|m| self.err("internal.allow", m)))
                .collect::<Result<Vec<_>>>()?,
            None => defaults::INTERNAL_ALLOW
                .iter()
                .map(|n| n.parse().expect("a valid default"))
                .collect(),
        };
        if allow.is_empty() {
            return Err(self.err(
                "internal.allow",
                "an empty list lets no one in; remove [internal] to turn the API off",
            ));
        }
        let token = match (i.token, i.token_file) {
            (None, None) => None,
            (token, file) => Some(self.secret("internal.token", token, file)?),
        };
        if token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(self.err(
                "internal.token",
                "must be at least 16 characters (a random string, say 32 bytes of base64)",
            ));
        }
        let max_body = i.max_body.unwrap_or(defaults::INTERNAL_MAX_BODY);
        if !(1024..=1024 * 1024 * 1024).contains(&max_body) {
            return Err(self.err("internal.max_body", "must be between 1024 and 1073741824"));
        }
        let decrypt_max_age = self.duration(
            "internal.decrypt_max_age",
            i.decrypt_max_age,
            defaults::DECRYPT_MAX_AGE,
        )?;
        if decrypt_max_age.is_zero() {
            return Err(self.err("internal.decrypt_max_age", "must be at least 1s"));
        }
        Ok(InternalConfig {
            listen,
            allow,
            token,
            max_body: max_body as usize,
            decrypt_max_age,
        })
    }
}
