use business_logic::settings::Settings;

fn main() -> anyhow::Result<()> {
    service_kit::run(Settings::from_env(), business_logic::startup::build)
}
