fn main() -> std::process::ExitCode {
    seamfs::cli::main()
}
