//! SES v2 mailer.

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageHeader};
use closedloop_core::ports::{MailError, Mailer, OutgoingEmail};

pub struct SesMailer {
    client: Client,
    from: String,
}

impl SesMailer {
    pub fn new(client: Client, from: impl Into<String>) -> Self {
        SesMailer {
            client,
            from: from.into(),
        }
    }
}

fn content(data: &str) -> Result<Content, MailError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| MailError::Rejected(e.to_string()))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        let mut body = Body::builder().text(content(&email.text)?);
        if let Some(html) = &email.html {
            body = body.html(content(html)?);
        }
        let mut message = Message::builder()
            .subject(content(&email.subject)?)
            .body(body.build());
        for (name, value) in &email.headers {
            message = message.headers(
                MessageHeader::builder()
                    .name(name)
                    .value(value)
                    .build()
                    .map_err(|e| MailError::Rejected(e.to_string()))?,
            );
        }
        let mut request = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(email.to.iter().map(|e| e.to_string()).collect()))
                    .build(),
            )
            .content(EmailContent::builder().simple(message.build()).build());
        if let Some(reply_to) = &email.reply_to {
            request = request.reply_to_addresses(reply_to.to_string());
        }
        match request.send().await {
            Ok(output) => Ok(output.message_id().unwrap_or_default().to_string()),
            Err(e) => {
                let transient = e.as_service_error().is_none_or(|s| {
                    s.is_too_many_requests_exception() || s.is_limit_exceeded_exception()
                });
                let why = aws_sdk_sesv2::error::DisplayErrorContext(&e).to_string();
                Err(if transient {
                    MailError::Transient(why)
                } else {
                    MailError::Rejected(why)
                })
            }
        }
    }
}
