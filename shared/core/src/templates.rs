//! Message templates. Tenants will edit these, so they run in minijinja's sandbox: no file or
//! environment access, HTML auto-escaped.

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

pub const RATING_REQUEST_SUBJECT: &str = r#"How did we do with "{{ ticket.subject }}"?"#;

pub const RATING_REQUEST_TEXT: &str = r#"Hi {{ contact.name }},

{{ agent_name }} recently worked on your request "{{ ticket.subject }}" (#{{ ticket.id }}).
How did we do? One click is enough:

{% for choice in choices %}  {{ choice.label }}: {{ choice.url }}
{% endfor %}
Thank you,
{{ brand.name }}

Don't want these emails? Unsubscribe: {{ unsubscribe_url }}
"#;

pub const RATING_REQUEST_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{ brand.name }}</title></head>
<body style="margin:0;padding:0;background:#f4f5f7;font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;color:#1f2937">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#f4f5f7;padding:24px 0"><tr><td align="center">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="max-width:560px;background:#ffffff;border-radius:8px;overflow:hidden">
<tr><td style="background:{{ brand.color }};padding:16px 24px;color:#ffffff;font-size:18px;font-weight:600">{{ brand.name }}</td></tr>
<tr><td style="padding:24px">
<p style="margin:0 0 12px">Hi {{ contact.name }},</p>
<p style="margin:0 0 20px">{{ agent_name }} recently worked on your request <strong>{{ ticket.subject }}</strong> (#{{ ticket.id }}). How did we do?</p>
<table role="presentation" cellpadding="0" cellspacing="0" width="100%"><tr>
{% for choice in choices %}<td align="center" style="padding:4px"><a href="{{ choice.url }}" style="display:block;padding:12px 6px;border-radius:6px;background:{{ choice.color }};color:#ffffff;text-decoration:none;font-weight:600">{{ choice.label }}</a></td>
{% endfor %}</tr></table>
<p style="margin:20px 0 0;font-size:13px;color:#6b7280">One click records your answer. You can add a comment on the next page.</p>
</td></tr>
<tr><td style="padding:16px 24px;font-size:12px;color:#6b7280">You received this because you contacted {{ brand.name }}. <a href="{{ unsubscribe_url }}" style="color:#6b7280">Unsubscribe</a> from rating requests.</td></tr>
</table></td></tr></table></body></html>
"#;

#[derive(Debug, thiserror::Error)]
#[error("template '{name}' failed: {reason}")]
pub struct TemplateError {
    pub name: String,
    pub reason: String,
}

/// A rendered email body set.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
}

/// Renders subject, text and HTML from template sources with one context.
pub fn render_email<C: Serialize>(
    subject: &str,
    text: &str,
    html: &str,
    context: &C,
) -> Result<RenderedEmail, TemplateError> {
    let env = environment();
    let render = |name: &str, source: &str| {
        env.render_named_str(name, source, context)
            .map_err(|e| TemplateError {
                name: name.to_string(),
                reason: e.to_string(),
            })
    };
    Ok(RenderedEmail {
        // Subjects are one line; a template must not smuggle header lines in.
        subject: render("subject.txt", subject)?
            .replace(['\r', '\n'], " ")
            .trim()
            .to_string(),
        text: render("body.txt", text)?,
        html: render("body.html", html)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_but_text_is_not_and_subjects_stay_on_one_line() {
        let ctx = serde_json::json!({"v": "<script>x</script>", "s": "a\r\nBcc: evil@x.com"});
        let out = render_email("{{ s }}", "{{ v }}", "<p>{{ v }}</p>", &ctx).unwrap();
        assert_eq!(out.html, "<p>&lt;script&gt;x&lt;&#x2f;script&gt;</p>");
        assert_eq!(out.text, "<script>x</script>");
        assert_eq!(out.subject, "a  Bcc: evil@x.com");
    }

    #[test]
    fn a_broken_template_names_itself() {
        let err = render_email("{{ oops", "", "", &serde_json::json!({})).unwrap_err();
        assert_eq!(err.name, "subject.txt");
    }
}
