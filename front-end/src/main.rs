use front_end::settings::Settings;
use front_end::startup::Application;

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let telemetry = telemetry::init(&settings.telemetry, std::io::stdout)?;
    actix_web::rt::System::new().block_on(async {
        let application = Application::build(settings).await?;
        application.run_until_stopped().await?;
        anyhow::Ok(())
    })?;
    telemetry.shutdown();
    Ok(())
}
