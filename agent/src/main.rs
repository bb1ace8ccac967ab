fn main() {
    std::process::exit(nodeward::cli::main());
}
