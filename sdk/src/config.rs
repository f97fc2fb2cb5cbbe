//! The app's config values, set per app by the operator or through the
//! control plane. They reach the component as its environment, so
//! `std::env::var` works too; nothing of the host's environment is inherited.

/// The value of config key `key`, if the app has one.
pub fn get(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// All config values of the app.
pub fn all() -> Vec<(String, String)> {
    std::env::vars().collect()
}
