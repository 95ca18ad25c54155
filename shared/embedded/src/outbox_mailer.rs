//! A mailer that writes each message as an `.eml` file into a directory: the local runner's
//! stand-in for SES. Open the files with any mail client, or read them in tests.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::Engine;
use closedloop_core::ports::{MailError, Mailer, OutgoingEmail};

pub struct OutboxMailer {
    dir: PathBuf,
    from: String,
}

impl OutboxMailer {
    pub fn new(dir: impl Into<PathBuf>, from: impl Into<String>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(OutboxMailer {
            dir,
            from: from.into(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// RFC 2047 encoding for header values that are not plain ASCII.
fn header_value(value: &str) -> String {
    let one_line = value.replace(['\r', '\n'], " ");
    if one_line.is_ascii() {
        one_line
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(one_line)
        )
    }
}

/// Renders an RFC 5322 message (multipart/alternative when there is HTML).
pub fn render_eml(from: &str, email: &OutgoingEmail, message_id: &str) -> String {
    let mut out = String::new();
    let to = email
        .to
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    out.push_str(&format!("From: {}\r\nTo: {to}\r\n", header_value(from)));
    if let Some(reply_to) = &email.reply_to {
        out.push_str(&format!("Reply-To: {reply_to}\r\n"));
    }
    out.push_str(&format!("Subject: {}\r\n", header_value(&email.subject)));
    out.push_str(&format!("Date: {}\r\n", chrono::Utc::now().to_rfc2822()));
    out.push_str(&format!(
        "Message-ID: <{message_id}@closedloop.local>\r\nMIME-Version: 1.0\r\n"
    ));
    for (name, value) in &email.headers {
        out.push_str(&format!(
            "{}: {}\r\n",
            header_value(name),
            header_value(value)
        ));
    }
    match &email.html {
        None => {
            out.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
            out.push_str(&email.text);
        }
        Some(html) => {
            let boundary = format!("closedloop-{message_id}");
            out.push_str(&format!(
                "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
            ));
            out.push_str(&format!(
                "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n",
                email.text
            ));
            out.push_str(&format!(
                "--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n"
            ));
            out.push_str(&format!("--{boundary}--\r\n"));
        }
    }
    out
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        let id = ulid::Ulid::new().to_string();
        let eml = render_eml(&self.from, email, &id);
        let dir = self.dir.clone();
        let name = format!("{id}.eml");
        // Write then rename, so a reader never sees half a message.
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let tmp = dir.join(format!(".{name}.tmp"));
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(eml.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, dir.join(&name))
        })
        .await
        .map_err(|e| MailError::Transient(e.to_string()))?
        .map_err(|e| MailError::Transient(format!("cannot write to the outbox directory: {e}")))?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closedloop_core::domain::Email;

    #[tokio::test]
    async fn each_message_lands_as_one_readable_eml_file() {
        let dir = std::env::temp_dir().join(format!("closedloop-outbox-{}", ulid::Ulid::new()));
        let mailer = OutboxMailer::new(&dir, "feedback@example.com").unwrap();
        let email = OutgoingEmail {
            to: vec![Email::parse("ann@example.com").unwrap()],
            reply_to: None,
            subject: "Wie war's? – Ticket 42".into(),
            text: "plain body".into(),
            html: Some("<p>html body</p>".into()),
            headers: vec![("List-Unsubscribe".into(), "<https://x/u>".into())],
        };
        let id = mailer.send(&email).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        assert_eq!(
            files[0].file_name().unwrap().to_str().unwrap(),
            format!("{id}.eml")
        );
        let eml = std::fs::read_to_string(&files[0]).unwrap();
        assert!(eml.contains("To: ann@example.com\r\n"));
        assert!(eml.contains("Subject: =?UTF-8?B?"));
        assert!(eml.contains("List-Unsubscribe: <https://x/u>\r\n"));
        assert!(eml.contains("plain body") && eml.contains("<p>html body</p>"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
