//! `xfer`: the command-line front end. Parsing and printing only; the work is in the library.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
