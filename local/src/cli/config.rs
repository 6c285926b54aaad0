//! Named profiles in a small TOML file, so a URL and key need not be typed each time:
//!
//! ```toml
//! default_profile = "local"
//!
//! [profiles.local]
//! url = "http://127.0.0.1:8080"
//! key = "hlk_..."
//! ```

use super::{CliError, CliResult};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub url: Option<String>,
    pub key: Option<String>,
}

/// `$XDG_CONFIG_HOME/hookline/config.toml`, else `~/.config/hookline/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("hookline").join("config.toml"))
}

/// The profile to use: the one named, else the file's default, else none. A named profile that
/// is not in the file is an error; a missing file is not, unless it was named explicitly.
pub fn load(explicit_path: Option<&Path>, profile_name: Option<&str>) -> CliResult<Profile> {
    let Some(path) = explicit_path.map(Path::to_path_buf).or_else(default_path) else {
        return match profile_name {
            Some(name) => Err(CliError::Usage(format!(
                "profile '{name}': no config file (set HOME, XDG_CONFIG_HOME or --config)"
            ))),
            None => Ok(Profile::default()),
        };
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && explicit_path.is_none() => {
            return match profile_name {
                Some(name) => Err(CliError::Usage(format!(
                    "profile '{name}': {} does not exist; create it with a [profiles.{name}] table",
                    path.display()
                ))),
                None => Ok(Profile::default()),
            };
        }
        Err(error) => {
            return Err(CliError::BadInput(format!(
                "config file {}: {error}",
                path.display()
            )));
        }
    };
    let file: ConfigFile = toml::from_str(&text).map_err(|error| {
        CliError::BadInput(format!(
            "config file {}: {}",
            path.display(),
            error.message()
        ))
    })?;
    let Some(name) = profile_name.or(file.default_profile.as_deref()) else {
        return Ok(Profile::default());
    };
    match file.profiles.get(name) {
        Some(profile) => Ok(profile.clone()),
        None => Err(CliError::Usage(format!(
            "no profile '{name}' in {} (profiles there: {})",
            path.display(),
            if file.profiles.is_empty() {
                "none".to_string()
            } else {
                file.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        ))),
    }
}
