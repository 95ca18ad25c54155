//! Message templates. Tenants will edit these, so they run in minijinja's sandbox: no file or
//! environment access, HTML auto-escaped.

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

use crate::keys;

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

/// Template work allowed per render: plenty for an email, but a tenant's endless loop stops.
const FUEL: u64 = 50_000;
/// Largest template source a tenant may store, per part.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// Largest rendered text per part. Fuel bounds the work, not the output: one instruction can
/// emit a string a hundred megabytes long (`"x" * 100000000`), so output past this is refused.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// Collects rendered output, refusing to grow past [`MAX_RENDERED_BYTES`].
struct BoundedOutput {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for BoundedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered text too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders `source` as template `name` (its extension picks the escaping), bounded in output.
fn render_bounded<C: Serialize>(
    env: &Environment<'_>,
    name: &str,
    source: &str,
    context: &C,
) -> Result<String, TemplateError> {
    let failed = |reason: String| TemplateError {
        name: name.to_string(),
        reason,
    };
    let template = env
        .template_from_named_str(name, source)
        .map_err(|e| failed(e.to_string()))?;
    let mut out = BoundedOutput {
        bytes: Vec::new(),
        overflowed: false,
    };
    match template.render_captured_to(context, &mut out) {
        Ok(_) => String::from_utf8(out.bytes)
            .map_err(|_| failed("the rendered text is not valid UTF-8".into())),
        Err(_) if out.overflowed => Err(failed(format!(
            "the rendered text is over the limit of {MAX_RENDERED_BYTES} bytes"
        ))),
        Err(e) => Err(failed(e.to_string())),
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    // No loader, and no `include`/`import`/`extends` in the language (the workspace leaves out
    // minijinja's multi_template feature): a template is the one source it is given.
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
    let render = |name: &str, source: &str| render_bounded(&env, name, source, context);
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

/// Checks that a template source parses, without rendering it.
pub fn check_syntax(name: &str, source: &str) -> Result<(), TemplateError> {
    let env = environment();
    env.template_from_named_str(name, source)
        .map(|_| ())
        .map_err(|e| TemplateError {
            name: name.to_string(),
            reason: e.to_string(),
        })
}

/// Renders one plain-text template (a rule action's note, message or subject).
pub fn render_text<C: Serialize>(
    name: &str,
    source: &str,
    context: &C,
) -> Result<String, TemplateError> {
    render_bounded(&environment(), name, source, context)
}

/// The rating-request email a tenant has saved (or the defaults).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatingRequestTemplates {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Default for RatingRequestTemplates {
    fn default() -> Self {
        RatingRequestTemplates {
            subject: RATING_REQUEST_SUBJECT.into(),
            text: RATING_REQUEST_TEXT.into(),
            html: RATING_REQUEST_HTML.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateCheckError {
    #[error("{0} is {1} bytes; the limit is {MAX_TEMPLATE_BYTES}")]
    TooLarge(&'static str, usize),
    #[error(transparent)]
    Broken(#[from] TemplateError),
    #[error(
        "the {0} part must contain the unsubscribe link ({{{{ unsubscribe_url }}}}); every rating request carries one"
    )]
    NoUnsubscribe(&'static str),
    #[error(
        "the {0} part must show the rating choices (loop over {{{{ choices }}}} and use choice.url)"
    )]
    NoChoices(&'static str),
}

/// What a rating-request template can use. The sample values are what `check` renders with.
pub fn sample_context(kind: crate::domain::SurveyKind) -> serde_json::Value {
    let choices: Vec<serde_json::Value> = match kind {
        crate::domain::SurveyKind::Csat => ["Good", "Okay", "Bad"]
            .iter()
            .enumerate()
            .map(|(i, l)| serde_json::json!({"label": l, "url": format!("https://example.invalid/r/choice-{i}"), "color": "#16a34a"}))
            .collect(),
        crate::domain::SurveyKind::Nps => (0..=10)
            .map(|n| serde_json::json!({"label": n.to_string(), "url": format!("https://example.invalid/r/choice-{n}"), "color": "#16a34a"}))
            .collect(),
    };
    serde_json::json!({
        "brand": { "name": "Acme Support", "color": "#2563eb" },
        "ticket": { "id": "1001", "subject": "Printer jams", "url": "https://helpdesk.example/tickets/1001" },
        "contact": { "name": "Bob Stone" },
        "agent_name": "Alice Meyer",
        "choices": choices,
        "unsubscribe_url": "https://example.invalid/u/unsubscribe-token",
    })
}

impl RatingRequestTemplates {
    /// Refuses templates that would break sends: too big, not rendering (syntax, undefined
    /// filters, running out of fuel) for CSAT or NPS, or missing the choices or the unsubscribe
    /// link in either body.
    pub fn check(&self) -> Result<(), TemplateCheckError> {
        for (part, source) in [
            ("subject", &self.subject),
            ("text", &self.text),
            ("html", &self.html),
        ] {
            if source.len() > MAX_TEMPLATE_BYTES {
                return Err(TemplateCheckError::TooLarge(part, source.len()));
            }
        }
        for kind in [
            crate::domain::SurveyKind::Csat,
            crate::domain::SurveyKind::Nps,
        ] {
            let rendered =
                render_email(&self.subject, &self.text, &self.html, &sample_context(kind))?;
            for (part, body) in [("text", &rendered.text), ("html", &rendered.html)] {
                // Markers without '/', which HTML escaping rewrites.
                if !body.contains("unsubscribe-token") {
                    return Err(TemplateCheckError::NoUnsubscribe(part));
                }
                if !body.contains("choice-1") {
                    return Err(TemplateCheckError::NoChoices(part));
                }
            }
        }
        Ok(())
    }
}

fn templates_key(tenant: &crate::ids::TenantId) -> crate::store::Key {
    crate::store::Key::new(keys::tenant_prefix(tenant), "TEMPLATE#rating_request")
}

/// The tenant's rating-request templates, or the defaults.
pub async fn rating_request_templates(
    store: &dyn crate::store::ItemStore,
    tenant: &crate::ids::TenantId,
) -> Result<RatingRequestTemplates, crate::store::StoreError> {
    Ok(match store.get(&templates_key(tenant)).await? {
        Some(item) => crate::records::read_record(&item)?,
        None => RatingRequestTemplates::default(),
    })
}

/// Saves checked templates; `None` goes back to the defaults.
pub async fn save_rating_request_templates(
    store: &dyn crate::store::ItemStore,
    tenant: &crate::ids::TenantId,
    templates: Option<&RatingRequestTemplates>,
) -> Result<(), crate::store::StoreError> {
    match templates {
        Some(t) => {
            store
                .put(
                    crate::records::record_item(&templates_key(tenant), "template", t),
                    None,
                )
                .await
        }
        None => store.delete(&templates_key(tenant), None).await.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_their_own_check() {
        RatingRequestTemplates::default().check().unwrap();
    }

    #[test]
    fn templates_that_would_break_sends_are_refused() {
        let base = RatingRequestTemplates::default();
        let no_unsubscribe = RatingRequestTemplates {
            text: "{% for c in choices %}{{ c.url }}{% endfor %}".into(),
            ..base.clone()
        };
        assert!(matches!(
            no_unsubscribe.check(),
            Err(TemplateCheckError::NoUnsubscribe("text"))
        ));
        let endless = RatingRequestTemplates {
            html:
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
                    .into(),
            ..base.clone()
        };
        assert!(matches!(
            endless.check(),
            Err(TemplateCheckError::Broken(_))
        ));
        let sneaky = RatingRequestTemplates {
            html: "{% include 'secrets.txt' %}".into(),
            ..base.clone()
        };
        assert!(matches!(sneaky.check(), Err(TemplateCheckError::Broken(_))));
    }

    #[test]
    fn html_is_escaped_but_text_is_not_and_subjects_stay_on_one_line() {
        let ctx = serde_json::json!({"v": "<script>x</script>", "s": "a\r\nBcc: evil@x.com"});
        let out = render_email("{{ s }}", "{{ v }}", "<p>{{ v }}</p>", &ctx).unwrap();
        assert_eq!(out.html, "<p>&lt;script&gt;x&lt;&#x2f;script&gt;</p>");
        assert_eq!(out.text, "<script>x</script>");
        assert_eq!(out.subject, "a  Bcc: evil@x.com");
    }

    #[test]
    fn output_past_the_limit_is_refused_not_collected() {
        // One instruction, a 100 MB string: fuel does not stop it, the output limit does.
        let err = render_text(
            "note.txt",
            r#"{{ "x" * 99999999 }}"#,
            &serde_json::json!({}),
        )
        .unwrap_err();
        assert!(err.reason.contains("over the limit"), "{}", err.reason);
        let looped = r#"{% for i in range(30) %}{{ "y" * 100000 }}{% endfor %}"#;
        assert!(render_text("note.txt", looped, &serde_json::json!({})).is_err());
        // Just under the limit renders whole.
        let fits = format!(r#"{{{{ "z" * {MAX_RENDERED_BYTES} }}}}"#);
        let out = render_text("note.txt", &fits, &serde_json::json!({})).unwrap();
        assert_eq!(out.len(), MAX_RENDERED_BYTES);
    }

    #[test]
    fn macros_are_not_part_of_the_template_language() {
        // Fuzzing found that a recursive macro doubling its argument (`f(n ~ n)`) exhausted
        // memory within the fuel; without macros there is no recursion at all.
        let recursive = "{% macro f(n) %}{{ f(n ~ n) }}{% endmacro %}{{ f(\"ab\") }}";
        assert!(check_syntax("note.txt", recursive).is_err());
        assert!(render_text("note.txt", recursive, &serde_json::json!({})).is_err());
    }

    #[test]
    fn imports_includes_and_extends_are_refused_not_panicking() {
        // Found by fuzzing: minijinja's code generator panics on an import into a non-name.
        for source in [
            "{% import '/etc/passwd' as 0 %}",
            "{% from 'x' import a %}{{ a }}",
            "{% include 'secrets.txt' %}",
            "{% extends 'base.html' %}",
        ] {
            let err = check_syntax("body.html", source).unwrap_err();
            assert!(
                err.reason.contains("syntax error"),
                "{source}: {}",
                err.reason
            );
            assert!(render_text("note.txt", source, &serde_json::json!({})).is_err());
        }
    }

    #[test]
    fn a_broken_template_names_itself() {
        let err = render_email("{{ oops", "", "", &serde_json::json!({})).unwrap_err();
        assert_eq!(err.name, "subject.txt");
    }
}
