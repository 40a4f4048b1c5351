use business_logic::settings::Settings;

fn main() -> std::process::ExitCode {
    service_kit::run(Settings::from_env(), business_logic::startup::build)
}
