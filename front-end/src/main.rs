use front_end::settings::Settings;

fn main() -> anyhow::Result<()> {
    service_kit::run(Settings::from_env(), front_end::startup::build)
}
