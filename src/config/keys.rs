//! One `[[token.keys]]` entry: its algorithm, and the secret or key file
//! that algorithm needs. Key files are read and parsed here, at load time,
//! so a wrong file is a config error and never a failed login.

use super::raw::RawKey;
use super::{key_files, Algorithm, Builder, KeyConfig, KeyMaterial, Result, MIN_HMAC_KEY_BYTES};

impl Builder<'_> {
    pub(super) fn key(&self, k: RawKey, default: Algorithm) -> Result<KeyConfig> {
        let id = k.id.0;
        let algorithm = match &k.algorithm {
            Some(name) => self.algorithm("token.keys.algorithm", &name.0)?,
            None => default,
        };
        let alg = algorithm.name();
        let material = match algorithm {
            Algorithm::HS256 => {
                if k.private_key_file.is_some() || k.public_key_file.is_some() {
                    return Err(self.err(
                        "token.keys.private_key_file",
                        format!("key {id}: HS256 keys take `secret` or `secret_file`; key files are for ES256 and EdDSA (set `algorithm` on the key)"),
                    ));
                }
                let secret = self.secret("token.keys.secret", k.secret, k.secret_file)?;
                if secret.len() < MIN_HMAC_KEY_BYTES {
                    return Err(self.err(
                        "token.keys.secret",
                        format!(
                            "key {id}: HS256 keys need at least {MIN_HMAC_KEY_BYTES} bytes, this one has {}",
                            secret.len()
                        ),
                    ));
                }
                KeyMaterial::Secret(secret)
            }
            Algorithm::ES256 | Algorithm::EdDSA => {
                if k.secret.is_some() || k.secret_file.is_some() {
                    return Err(self.err(
                        "token.keys.secret",
                        format!("key {id}: {alg} keys take `private_key_file` (or `public_key_file` when verify_only), not a secret"),
                    ));
                }
                match (k.private_key_file, k.public_key_file) {
                    (Some(file), None) => {
                        let text = self.key_file("token.keys.private_key_file", &id, &file.0)?;
                        let key = key_files::private_key_from_pem(algorithm, &text)
                            .map_err(|m| self.err("token.keys.private_key_file", format!("key {id}: {}: {m}", file.0)))?;
                        KeyMaterial::Private(key)
                    }
                    (None, Some(file)) if k.verify_only => {
                        let text = self.key_file("token.keys.public_key_file", &id, &file.0)?;
                        let key = key_files::public_key_from_pem(algorithm, &text)
                            .map_err(|m| self.err("token.keys.public_key_file", format!("key {id}: {}: {m}", file.0)))?;
                        KeyMaterial::Public(key)
                    }
                    (None, Some(_)) => {
                        return Err(self.err(
                            "token.keys.public_key_file",
                            format!("key {id} signs, so it needs `private_key_file`; `public_key_file` is for verify_only keys"),
                        ))
                    }
                    (Some(_), Some(_)) => {
                        return Err(self.err(
                            "token.keys.private_key_file",
                            format!("key {id}: set either private_key_file or public_key_file, not both"),
                        ))
                    }
                    (None, None) => {
                        return Err(self.err(
                            "token.keys.private_key_file",
                            format!("key {id}: {alg} keys need `private_key_file` (or `public_key_file` when verify_only)"),
                        ))
                    }
                }
            }
        };
        Ok(KeyConfig {
            id,
            algorithm,
            material,
            verify_only: k.verify_only,
        })
    }

    /// A key file's text; relative paths are relative to the config file.
    fn key_file(&self, key: &str, id: &str, file: &str) -> Result<String> {
        let path = self.base_dir.join(file);
        std::fs::read_to_string(&path).map_err(|e| {
            self.err(
                key,
                format!("key {id}: cannot read {}: {e}", path.display()),
            )
        })
    }
}
