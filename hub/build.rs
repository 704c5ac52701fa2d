//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the files at compile time
//! but does not itself tell cargo to watch the folder.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
