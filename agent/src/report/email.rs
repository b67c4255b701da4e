//! Email over SMTP (lettre): STARTTLS by default, implicit TLS, or plain on
//! a trusted network.

use std::path::Path;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use vertice_crds::notifications::{EmailChannel, SmtpTls};
use vertice_crds::run_summary::RunSummary;

use crate::error::{Error, Result};
use crate::secret_files;

pub async fn send(
    email: &EmailChannel,
    dir: &Path,
    subject: &str,
    summary: &RunSummary,
) -> Result<()> {
    let from = email
        .from
        .parse()
        .map_err(|e| Error::usage(format!("notifications.email.from {:?}: {e}", email.from)))?;
    let mut builder = Message::builder().from(from).subject(subject);
    for to in &email.to {
        builder = builder.to(to
            .parse()
            .map_err(|e| Error::usage(format!("notifications.email.to {to:?}: {e}")))?);
    }
    let body = format!(
        "{subject}\n\n{}\n",
        serde_json::to_string_pretty(summary).unwrap_or_default()
    );
    let message = builder
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| Error::usage(format!("notifications.email: {e}")))?;
    let host = email.smtp_host.as_str();
    let smtp_err = |e: lettre::transport::smtp::Error| {
        Error::target(format!("SMTP {host}:{}: {e}", email.smtp_port))
    };
    let mut transport = match email.tls {
        SmtpTls::StartTls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(smtp_err)?
        }
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(smtp_err)?,
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
    }
    .port(email.smtp_port)
    .timeout(Some(Duration::from_secs(30)));
    if let (Some(user), Some(password)) = (&email.username_secret_ref, &email.password_secret_ref) {
        transport = transport.credentials(Credentials::new(
            secret_files::read(dir, user)?,
            secret_files::read(dir, password)?,
        ));
    }
    transport.build().send(message).await.map_err(smtp_err)?;
    Ok(())
}
