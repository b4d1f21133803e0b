//! `wxgate keygen`: a new private key file (mode 0600, never over an
//! existing file without `--force`), its public key beside it, and the
//! `[[token.keys]]` entry to paste on stdout.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wxgate::auth::token::keys;
use wxgate::config::Algorithm;

pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    match Algorithm::from_name(name) {
        Some(a @ (Algorithm::ES256 | Algorithm::EdDSA)) => Ok(a),
        _ => Err("expected \"es256\" or \"eddsa\"".to_owned()),
    }
}

/// `k2.pem` -> `k2.pub.pem`; `k2` -> `k2.pub.pem`.
fn public_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let stem = name.strip_suffix(".pem").unwrap_or(&name);
    out.with_file_name(format!("{stem}.pub.pem"))
}

pub fn run(algorithm: Algorithm, out: &Path, id: Option<String>, force: bool) -> ExitCode {
    let id = id.unwrap_or_else(|| {
        let name = out
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        name.strip_suffix(".pem").unwrap_or(&name).to_owned()
    });
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        eprintln!("wxgate: the key id must be 1 to 64 printable ASCII characters (set --id)");
        return ExitCode::from(2);
    }
    let public_out = public_path(out);
    if !force {
        for path in [out, public_out.as_path()] {
            if path.exists() {
                eprintln!(
                    "wxgate: {} exists; pass --force to replace it",
                    path.display()
                );
                return ExitCode::from(2);
            }
        }
    }
    let (private_pem, public) = match keys::generate(algorithm) {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("wxgate: cannot generate a key: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = write_file(out, private_pem.as_bytes(), 0o600) {
        eprintln!("wxgate: cannot write {}: {e}", out.display());
        return ExitCode::from(1);
    }
    let public_pem = public.to_pem();
    if let Err(e) = write_file(&public_out, public_pem.as_bytes(), 0o644) {
        eprintln!("wxgate: cannot write {}: {e}", public_out.display());
        return ExitCode::from(1);
    }
    let absolute = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf());
    let toml_str = |s: &str| toml::Value::String(s.to_owned()).to_string();
    eprintln!(
        "wxgate: wrote the private key to {} (mode 0600) and the public key to {}:\n{public_pem}",
        out.display(),
        public_out.display()
    );
    println!("[[token.keys]]");
    println!("id = {}", toml_str(&id));
    println!("algorithm = \"{}\"", algorithm.name());
    println!(
        "private_key_file = {}",
        toml_str(&absolute.to_string_lossy())
    );
    ExitCode::SUCCESS
}

/// Creates `path` with `mode` from the start (no window where a private key
/// is readable by others); an existing file is removed first (`--force`).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
