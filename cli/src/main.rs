//! The `bittern` command.

fn main() {
    eprintln!("bittern: not yet implemented");
    std::process::exit(2);
}
