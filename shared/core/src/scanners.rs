//! Telling mail-security scanners from people. Scanners open every link in an email, often
//! within a second, to look for malware; they must not create ratings. See
//! `docs/rating-links.md` for the whole set of heuristics.

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

/// Two different choices of one email clicked closer together than this look machine-made.
pub const BURST_SECONDS: i64 = 10;

/// Lower-case fragments of user agents that belong to scanners, link previewers and HTTP
/// libraries rather than to a person's browser or mail app.
const MACHINE_AGENT_FRAGMENTS: &[&str] = &[
    // Headless and automation browsers, which most scanners drive.
    "headlesschrome",
    "phantomjs",
    "electron/",
    "puppeteer",
    "playwright",
    "selenium",
    // Mail-security gateways and URL rewriters.
    "barracuda",
    "mimecast",
    "proofpoint",
    "urldefense",
    "safelinks",
    "symantec",
    "messagelabs",
    "trendmicro",
    "trend micro",
    "fortiguard",
    "fortimail",
    "sophos",
    "ironport",
    "forcepoint",
    "zscaler",
    "checkpoint",
    "cloudmark",
    "virustotal",
    "microsoft office",
    "ms-office",
    "microsoft url control",
    "skypeuripreview",
    "bingpreview",
    // Crawlers and link previewers.
    "googlebot",
    "bingbot",
    "applebot",
    "yandexbot",
    "duckduckbot",
    "baiduspider",
    "slackbot",
    "twitterbot",
    "linkedinbot",
    "discordbot",
    "telegrambot",
    "whatsapp",
    "facebookexternalhit",
    "google-inspectiontool",
    "crawler",
    "spider",
    "(compatible; +http",
    // Libraries and command-line tools.
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "go-http-client",
    "java/",
    "okhttp",
    "apache-httpclient",
    "libwww-perl",
    "axios/",
    "node-fetch",
    "undici",
    "reqwest",
    "postmanruntime",
    "powershell",
];

/// All of [`MACHINE_AGENT_FRAGMENTS`] at once, ignoring ASCII case: one pass over the user
/// agent on every click instead of one search per fragment.
static MACHINE_AGENTS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(MACHINE_AGENT_FRAGMENTS)
        .expect("the fragments build an automaton")
});

/// Why a request looks machine-made from its user agent alone, if it does.
pub fn machine_user_agent(user_agent: Option<&str>) -> Option<&'static str> {
    let Some(agent) = user_agent.map(str::trim).filter(|a| !a.is_empty()) else {
        return Some("no user agent");
    };
    if MACHINE_AGENTS.is_match(agent) {
        // The reason is the first fragment in list order, as it always was (rare: machines).
        let agent = agent.to_ascii_lowercase();
        return MACHINE_AGENT_FRAGMENTS
            .iter()
            .find(|f| agent.contains(*f))
            .copied();
    }
    // Every browser and mail app in use sends a Mozilla/5.0 token; scanners that invent their
    // own names do not.
    if !agent
        .as_bytes()
        .get(..8)
        .is_some_and(|start| start.eq_ignore_ascii_case(b"mozilla/"))
    {
        return Some("not a browser");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check as it was written first: lower-case, then each fragment in turn.
    fn one_by_one(user_agent: Option<&str>) -> Option<&'static str> {
        let Some(agent) = user_agent.map(str::trim).filter(|a| !a.is_empty()) else {
            return Some("no user agent");
        };
        let agent = agent.to_ascii_lowercase();
        if let Some(fragment) = MACHINE_AGENT_FRAGMENTS.iter().find(|f| agent.contains(*f)) {
            return Some(fragment);
        }
        if !agent.starts_with("mozilla/") {
            return Some("not a browser");
        }
        None
    }

    #[test]
    fn one_pass_gives_the_same_reason_as_one_search_per_fragment() {
        let mut agents: Vec<String> = vec![
            "  Mozilla/5.0 (X11) ".into(),
            "MOZILLA/5.0".into(),
            "Mozilla/".into(),
            "Mozill".into(),
            "Möżilla/5.0".into(),
            "\u{e9}Mozilla/5.0 Baiduspider and spider".into(),
            "Mozilla/5.0 (compatible; BaiduSpider/2.0)".into(),
        ];
        for fragment in MACHINE_AGENT_FRAGMENTS {
            agents.push(format!(
                "Mozilla/5.0 ({}) Safari",
                fragment.to_ascii_uppercase()
            ));
            agents.push(format!("{fragment}é"));
            agents.push(fragment[1..].to_string());
        }
        for agent in &agents {
            assert_eq!(
                machine_user_agent(Some(agent)),
                one_by_one(Some(agent)),
                "{agent}"
            );
        }
    }

    #[test]
    fn phones_desktops_and_mail_apps_are_people() {
        for agent in [
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
            // An Android phone brand that contains "bot".
            "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:127.0) Gecko/20100101 Firefox/127.0",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [GMail]",
        ] {
            assert_eq!(machine_user_agent(Some(agent)), None, "{agent}");
        }
    }

    #[test]
    fn scanners_previewers_and_tools_are_machines() {
        for agent in [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
            "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Trident/7.0; Microsoft Outlook 16.0; ms-office; MSOffice 16)",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "WhatsApp/2.23.20.0 A",
            "curl/8.5.0",
            "python-requests/2.32.3",
            "Go-http-client/1.1",
            "Proofpoint-URL-Defense",
            "",
        ] {
            assert!(machine_user_agent(Some(agent)).is_some(), "{agent}");
        }
        assert_eq!(machine_user_agent(None), Some("no user agent"));
    }
}
