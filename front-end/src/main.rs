use front_end::settings::Settings;

fn main() -> std::process::ExitCode {
    service_kit::run(Settings::from_env(), front_end::startup::build)
}
