//! Cost of verifying a rating-link token per click, against the bare HMAC-SHA256 of the same
//! payload as a baseline measured in the same run.
//! `cargo bench -p closedloop-core --bench tokens`

use chrono::{Duration, Utc};
use closedloop_core::ids::{SurveyRequestId, TenantId};
use closedloop_core::signature::hmac_sha256;
use closedloop_core::tokens::{RatingClaims, TokenKeyring};
use criterion::{Criterion, black_box, criterion_group, criterion_main};

fn tokens(c: &mut Criterion) {
    let spec = TokenKeyring::generate_spec("k1");
    let ring = TokenKeyring::parse(&spec).unwrap();
    let now = Utc::now();
    let token = ring.sign(&RatingClaims {
        tenant: TenantId::parse("acme-msp").unwrap(),
        survey_request: SurveyRequestId::new(),
        value: "positive".into(),
        expires_at: now + Duration::days(30),
    });
    let payload = token.split('.').next().unwrap().as_bytes().to_vec();
    let mut group = c.benchmark_group("rating token");
    group.bench_function("baseline: hmac-sha256 of the payload", |b| {
        b.iter(|| {
            hmac_sha256(
                black_box(b"0123456789abcdef0123456789abcdef"),
                black_box(&payload),
            )
        })
    });
    group.bench_function(
        "verify (decode, hmac, constant-time compare, parse claims)",
        |b| b.iter(|| ring.verify(black_box(&token), now).unwrap()),
    );
    group.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
