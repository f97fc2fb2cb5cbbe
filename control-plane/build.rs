//! Rebuilds the crate when a migration is added under `migrations/`:
//! refinery's `embed_migrations!` reads the directory at compile time, and
//! cargo tracks only the files it already included.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
