use business_logic::settings::Settings;
use business_logic::startup::Application;

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let telemetry = telemetry::init_stdout(&settings.telemetry)?;
    actix_web::rt::System::new().block_on(async {
        let application = Application::build(settings).await?;
        application.run_until_stopped().await?;
        anyhow::Ok(())
    })?;
    telemetry.shutdown();
    Ok(())
}
