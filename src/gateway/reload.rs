//! Key rotation without a restart. On `SIGHUP` the secrets that came from files
//! (`SPACES_ACCESS_KEY_ID_FILE`, `SPACES_SECRET_ACCESS_KEY_FILE`, the fallback bucket's
//! `SPACES_FALLBACK_ACCESS_KEY_ID_FILE` and `SPACES_FALLBACK_SECRET_ACCESS_KEY_FILE`,
//! `LABEL_GATEWAY_INTERNAL__TOKEN_FILE`, `LABEL_GATEWAY_REGENERATE__TOKEN_FILE`) are read
//! again and put in force for every request that starts afterwards; requests in flight,
//! downloads included, finish as they began. Secrets given as plain variables keep their
//! start-up value (a process's environment cannot change under it).
//!
//! A reload is all or nothing: when one file cannot be read or is empty, every old
//! secret stays in force and the log says why. Only variable names are logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Gateway;
use crate::config::{read_secret_file, Config, SECRET_VARS};
use crate::secret::Secret;

const ACCESS_KEY_ID: &str = "SPACES_ACCESS_KEY_ID";
const SECRET_ACCESS_KEY: &str = "SPACES_SECRET_ACCESS_KEY";
const FALLBACK_ACCESS_KEY_ID: &str = "SPACES_FALLBACK_ACCESS_KEY_ID";
const FALLBACK_SECRET_ACCESS_KEY: &str = "SPACES_FALLBACK_SECRET_ACCESS_KEY";
const INTERNAL_TOKEN: &str = "LABEL_GATEWAY_INTERNAL__TOKEN";
const REGENERATE_TOKEN: &str = "LABEL_GATEWAY_REGENERATE__TOKEN";

/// The secrets in force, by variable name.
pub(super) struct Secrets(BTreeMap<&'static str, Secret>);

impl Secrets {
    pub(super) fn from_config(config: &Config) -> Secrets {
        Secrets(
            SECRET_VARS
                .iter()
                .filter_map(|(var, _)| Some((*var, config.secret(var)?.clone())))
                .collect(),
        )
    }
}

impl Gateway {
    /// Reads the secret files again and puts what changed in force. Returns the names
    /// of the variables whose secret changed (empty when none did, or none comes from a
    /// file), or why nothing was reloaded.
    pub fn reload_secrets(&self) -> Result<Vec<&'static str>, String> {
        let files = &self.config.secret_files;
        if files.is_empty() {
            tracing::info!("secrets not reloaded: none comes from a file (*_FILE)");
            return Ok(Vec::new());
        }
        let mut fresh = Vec::with_capacity(files.len());
        for (var, path) in files {
            match read_secret_file(var, path) {
                Ok(secret) => fresh.push((*var, secret)),
                Err(why) => {
                    tracing::warn!(error = %why, "secrets not reloaded: the old ones stay in force");
                    return Err(why);
                }
            }
        }
        let mut current = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = Vec::new();
        for (var, secret) in fresh {
            let same = current
                .0
                .get(var)
                .is_some_and(|old| old.matches(secret.expose().as_bytes()));
            if !same {
                current.0.insert(var, secret);
                changed.push(var);
            }
        }
        if changed.contains(&ACCESS_KEY_ID) || changed.contains(&SECRET_ACCESS_KEY) {
            if let (Some(id), Some(secret)) = (
                current.0.get(ACCESS_KEY_ID),
                current.0.get(SECRET_ACCESS_KEY),
            ) {
                self.storage.set_credentials(id, secret);
            }
        }
        if changed.contains(&FALLBACK_ACCESS_KEY_ID)
            || changed.contains(&FALLBACK_SECRET_ACCESS_KEY)
        {
            if let (Some(id), Some(secret)) = (
                current.0.get(FALLBACK_ACCESS_KEY_ID),
                current.0.get(FALLBACK_SECRET_ACCESS_KEY),
            ) {
                self.storage.set_fallback_credentials(id, secret);
            }
        }
        if changed.contains(&INTERNAL_TOKEN) {
            let token = current.0.get(INTERNAL_TOKEN).cloned().map(Arc::new);
            self.internal_token.store(token);
        }
        if changed.contains(&REGENERATE_TOKEN) {
            if let Some(regenerator) = &self.regenerator {
                regenerator.set_token(current.0.get(REGENERATE_TOKEN).cloned());
            }
        }
        if changed.is_empty() {
            tracing::info!("secrets reloaded: none changed");
        } else {
            tracing::info!(changed = %changed.join(", "), "secrets reloaded");
        }
        Ok(changed)
    }
}
