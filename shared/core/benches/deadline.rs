//! Cost of an SLA deadline against a business-hours calendar, with the 24/7 calendar (plain
//! addition) as the baseline measured in the same run.
//! `cargo bench -p closedloop-core --bench deadline`
//!
//! Each iteration takes the next of 1,024 start instants spread over 2026 (every weekday and
//! hour, open and closed, both DST changes), so the figure is an average over where tickets land.

use chrono::{DateTime, Duration, Utc};
use closedloop_core::calendar::BusinessCalendar;
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use serde_json::json;

/// Monday to Friday 09:00–17:00 in Warsaw with Poland's public holidays and two company days:
/// 12 yearly dates, Easter Monday and Corpus Christi for 2026 and 2027, and two bridge days, about
/// 15 closed days a year.
fn office() -> BusinessCalendar {
    let day = json!(["09:00-17:00"]);
    serde_json::from_value(json!({
        "time_zone": "Europe/Warsaw",
        "hours": {"monday": day, "tuesday": day, "wednesday": day, "thursday": day, "friday": day},
        "holidays": [
            "01-01", "01-06", "05-01", "05-03", "08-15", "11-01", "11-11", "12-24", "12-25", "12-26",
            "2026-04-06", "2026-06-04", "2027-03-29", "2027-05-27",
            "2026-05-04", "2026-11-10", "2027-05-28", "2027-11-12",
        ],
    }))
    .unwrap()
}

fn starts() -> Vec<DateTime<Utc>> {
    let first: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    // A step that is not a whole number of hours or days, so starts fall everywhere in the week.
    let step = Duration::seconds(8 * 3_600 + 33 * 60 + 17);
    (0..1_024).map(|i| first + step * i).collect()
}

fn deadline(c: &mut Criterion) {
    let always = BusinessCalendar::always_open();
    let office = office();
    let starts = starts();
    let mut group = c.benchmark_group("sla deadline");
    for (sla, hours) in [("8 h", 8), ("40 h", 40), ("1000 h", 1_000)] {
        let business = Duration::hours(hours);
        for (name, calendar) in [
            ("baseline: 24/7", &always),
            ("Mon-Fri 9-17, Warsaw, holidays", &office),
        ] {
            let mut i = 0;
            group.bench_function(format!("{sla} SLA, {name}"), |b| {
                b.iter(|| {
                    i = (i + 1) & 1_023;
                    calendar.deadline(black_box(starts[i]), black_box(business))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, deadline);
criterion_main!(benches);
