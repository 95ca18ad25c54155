//! Event patterns and events from AWS's EventBridge documentation, used as written.
//!
//! Sources (Amazon EventBridge User Guide):
//! * "Amazon EventBridge event patterns" / "Event pattern syntax":
//!   https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html
//! * "Content filtering in Amazon EventBridge event patterns":
//!   https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-content-based-filtering.html
//! * "Comparison operators for use in event patterns in Amazon EventBridge":
//!   https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html
//! * "Matching null values and empty strings in Amazon EventBridge event patterns":
//!   https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-null-values.html
//! * "Arrays in Amazon EventBridge event patterns":
//!   https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-arrays.html
//!
//! Patterns are copied from those pages (and from the README of `aws/event-ruler`, the matcher
//! EventBridge uses). Where a page gives a pattern without an event, the README's sample event or
//! a minimal made-up event is matched against it.

use closedloop_eventpattern::{EventPattern, PatternError};
use serde_json::{Value, json};

fn pattern(json: Value) -> EventPattern {
    EventPattern::parse(&json).unwrap_or_else(|error| panic!("pattern {json} is invalid: {error}"))
}

/// From "Amazon EventBridge event patterns".
fn ec2_termination_event() -> Value {
    json!({
      "version": "0",
      "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
      "detail-type": "EC2 Instance State-change Notification",
      "source": "aws.ec2",
      "account": "111122223333",
      "time": "2017-12-22T18:43:48Z",
      "region": "us-west-1",
      "resources": [
        "arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"
      ],
      "detail": {
        "instance-id": "i-1234567890abcdef0",
        "state": "terminated"
      }
    })
}

/// The sample event of aws/event-ruler's README.
fn ruler_sample_event() -> Value {
    json!({
      "version": "0",
      "id": "ddddd4-aaaa-7777-4444-345dd43cc333",
      "detail-type": "EC2 Instance State-change Notification",
      "source": "aws.ec2",
      "account": "012345679012",
      "time": "2017-10-02T16:24:49Z",
      "region": "us-east-1",
      "resources": [
        "arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"
      ],
      "detail": {
        "c-count": 5,
        "d-count": 3,
        "x-limit": 301.8,
        "source-ip": "10.0.0.33",
        "instance-id": "i-000000aaaaaa00000",
        "state": "running"
      }
    })
}

/// From "Matching null values and empty strings".
fn autoscaling_event() -> Value {
    json!({
      "version": "0",
      "id": "3e3c153a-8339-4e30-8c35-687ebef853fe",
      "detail-type": "EC2 Instance Launch Successful",
      "source": "aws.autoscaling",
      "account": "123456789012",
      "time": "2015-11-11T21:31:47Z",
      "region": "us-east-1",
      "resources": [
       ],
      "detail": {
        "eventVersion": "",
        "responseElements": null
       }
    })
}

fn with_detail(field: &str, value: Value) -> Value {
    let mut event = ec2_termination_event();
    event["detail"][field] = value;
    event
}

#[test]
fn ec2_termination_pattern_matches_only_terminated_instances() {
    let termination = pattern(json!({
      "source": ["aws.ec2"],
      "detail-type": ["EC2 Instance State-change Notification"],
      "detail": {
        "state": ["terminated"]
      }
    }));
    assert!(termination.matches(&ec2_termination_event()));
    assert!(!termination.matches(&with_detail("state", json!("running"))));
    let mut other_source = ec2_termination_event();
    other_source["source"] = json!("aws.autoscaling");
    assert!(!termination.matches(&other_source));
}

#[test]
fn several_values_in_a_field_match_any_of_them() {
    let ec2_or_fargate = pattern(json!({
        "source": ["aws.ec2", "aws.fargate"]
    }));
    assert!(ec2_or_fargate.matches(&ec2_termination_event()));
    assert!(ec2_or_fargate.matches(&json!({"source": "aws.fargate"})));
    assert!(!ec2_or_fargate.matches(&json!({"source": "aws.s3"})));
}

#[test]
fn macie_pattern_matches_nested_numbers() {
    // "Value matching" example of "Amazon EventBridge event patterns" (event truncated there too).
    let event = json!({
      "version": "0",
      "id": "3e355723-fca9-4de3-9fd7-154c289d6b59",
      "detail-type": "Macie Alert",
      "source": "aws.macie",
      "account": "123456789012",
      "time": "2017-04-24T22:28:49Z",
      "region": "us-east-1",
      "resources": [
        "arn:aws:macie:us-east-1:123456789012:trigger/trigger_id/alert/alert_id",
        "arn:aws:macie:us-east-1:123456789012:trigger/trigger_id"
      ],
      "detail": {
        "notification-type": "ALERT_CREATED",
        "name": "Scanning bucket policies",
        "tags": [
          "Custom_Alert",
          "Insider"
        ],
        "url": "https://lb00.us-east-1.macie.aws.amazon.com/111122223333/posts/alert_id",
        "alert-arn": "arn:aws:macie:us-east-1:123456789012:trigger/trigger_id/alert/alert_",
        "risk-score": 80,
        "trigger": {
          "rule-arn": "arn:aws:macie:us-east-1:123456789012:trigger/trigger_id",
          "alert-type": "basic",
          "created-at": "2017-01-02 19:54:00.644000",
          "description": "Alerting on failed enumeration of large number of bucket policies",
          "risk": 8
        },
        "created-at": "2017-04-18T00:21:12.059000"
      }
    });
    let risky = pattern(json!({
      "source": ["aws.macie"],
      "detail-type": ["Macie Alert"],
      "detail": {
        "risk-score": [80],
        "trigger": {
          "risk": [8]
        }
      }
    }));
    assert!(risky.matches(&event));
    let mut less_risky = event.clone();
    less_risky["detail"]["trigger"]["risk"] = json!(7);
    assert!(!risky.matches(&less_risky));
}

#[test]
fn null_and_empty_string_match_only_themselves() {
    let empty_version = pattern(json!({
      "detail": {
         "eventVersion": [""]
      }
    }));
    let null_elements = pattern(json!({
      "detail": {
         "responseElements": [null]
      }
    }));
    assert!(empty_version.matches(&autoscaling_event()));
    assert!(null_elements.matches(&autoscaling_event()));
    // "Null values and empty strings are not interchangeable in pattern matching."
    let swapped = pattern(json!({"detail": {"responseElements": [""]}}));
    assert!(!swapped.matches(&autoscaling_event()));
    let swapped = pattern(json!({"detail": {"eventVersion": [null]}}));
    assert!(!swapped.matches(&autoscaling_event()));
}

#[test]
fn arrays_match_when_pattern_and_event_values_intersect() {
    let by_instance = pattern(json!({
        "resources": [
           "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
           "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
           "arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f"
        ]
    }));
    let event = json!({
        "resources": [
           "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-b893-d5978ed4a025:autoScalingGroupName/ASGTerminate",
           "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"
        ]
    });
    assert!(by_instance.matches(&event));
    assert!(
        !by_instance.matches(
            &json!({"resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-other"]})
        )
    );
    assert!(!by_instance.matches(&json!({"resources": []})));
}

#[test]
fn prefix_matching() {
    let on_the_day = pattern(json!({
      "time": [ { "prefix": "2017-10-02" } ]
    }));
    assert!(on_the_day.matches(&ruler_sample_event()));
    assert!(!on_the_day.matches(&ec2_termination_event()));
    // Prefixes only apply to strings.
    assert!(!pattern(json!({"n": [{"prefix": "1"}]})).matches(&json!({"n": 12})));
}

#[test]
fn prefix_and_suffix_matching_ignoring_case() {
    let service = pattern(json!({
        "detail": {"service" : [{ "prefix": { "equals-ignore-case": "EventB" }}]}
    }));
    for name in ["EventBridge", "EVENTBRIDGE", "eventbus"] {
        assert!(
            service.matches(&json!({"detail": {"service": name}})),
            "{name}"
        );
    }
    assert!(!service.matches(&json!({"detail": {"service": "Lambda"}})));

    let png = pattern(json!({
        "detail": {"FileName" : [{ "suffix": { "equals-ignore-case": ".png" }}]}
    }));
    assert!(png.matches(&json!({"detail": {"FileName": "photo.PNG"}})));
    assert!(!png.matches(&json!({"detail": {"FileName": "photo.jpg"}})));
}

#[test]
fn suffix_and_equals_ignore_case_matching() {
    let png = pattern(json!({
      "FileName": [ { "suffix": ".png" } ]
    }));
    assert!(png.matches(&json!({"FileName": "image.png"})));
    assert!(!png.matches(&json!({"FileName": "image.PNG"})));

    let alice = pattern(json!({ "Name": [ { "equals-ignore-case": "alice" } ] }));
    assert!(alice.matches(&json!({"Name": "Alice"})));
    assert!(alice.matches(&json!({"Name": "ALICE"})));
    assert!(!alice.matches(&json!({"Name": "Alicia"})));
}

#[test]
fn wildcard_matching() {
    let service = pattern(json!({
      "source": [ { "wildcard": "Simple*Service" } ]
    }));
    assert!(service.matches(&json!({"source": "SimpleQueueService"})));
    assert!(service.matches(&json!({"source": "SimpleNotificationService"})));
    assert!(!service.matches(&json!({"source": "SimpleQueueServices"})));

    let not_lib = pattern(json!({ "FilePath" : [{ "anything-but": { "wildcard": "*/lib/*" }}] }));
    assert!(!not_lib.matches(&json!({"FilePath": "/usr/lib/libc.so"})));
    assert!(not_lib.matches(&json!({"FilePath": "/usr/bin/ls"})));
}

#[test]
fn anything_but_a_string_or_number() {
    let not_initializing = pattern(json!({
      "detail": {
        "state": [ { "anything-but": "initializing" } ]
      }
    }));
    assert!(not_initializing.matches(&ruler_sample_event()));
    assert!(!not_initializing.matches(&with_detail("state", json!("initializing"))));
    // anything-but still needs the field to be there.
    assert!(!not_initializing.matches(&json!({"detail": {}})));

    let not_123 = pattern(json!({
      "detail": {
        "x-limit": [ { "anything-but": 123 } ]
      }
    }));
    assert!(not_123.matches(&ruler_sample_event()));
    assert!(!not_123.matches(&with_detail("x-limit", json!(123))));
    assert!(!not_123.matches(&with_detail("x-limit", json!(123.0))));
}

#[test]
fn anything_but_a_list() {
    let stopped_or_overloaded = pattern(json!({
      "detail": {
        "state": [ { "anything-but": [ "stopped", "overloaded" ] } ]
      }
    }));
    assert!(stopped_or_overloaded.matches(&ruler_sample_event()));
    assert!(!stopped_or_overloaded.matches(&with_detail("state", json!("stopped"))));
    assert!(!stopped_or_overloaded.matches(&with_detail("state", json!("overloaded"))));

    let round_limits = pattern(json!({
      "detail": {
        "x-limit": [ { "anything-but": [ 100, 200, 300 ] } ]
      }
    }));
    assert!(round_limits.matches(&ruler_sample_event()));
    assert!(!round_limits.matches(&with_detail("x-limit", json!(200))));
    assert!(!round_limits.matches(&with_detail("x-limit", json!(3.0e2))));
}

#[test]
fn anything_but_prefix_suffix_and_ignore_case() {
    let not_init = pattern(json!({
      "detail": {
        "state": [ { "anything-but": { "prefix": "init" } } ]
      }
    }));
    assert!(not_init.matches(&ruler_sample_event()));
    assert!(!not_init.matches(&with_detail("state", json!("initializing"))));

    let outside_us = pattern(json!({ "Region": [ { "anything-but": {"prefix": "us-" } } ] }));
    assert!(outside_us.matches(&json!({"Region": "eu-west-1"})));
    assert!(!outside_us.matches(&json!({"Region": "us-east-1"})));

    let not_png = pattern(json!({ "FileName": [ { "anything-but": { "suffix": ".png" } } ] }));
    assert!(not_png.matches(&json!({"FileName": "a.jpg"})));
    assert!(!not_png.matches(&json!({"FileName": "a.png"})));

    let not_initializing =
        pattern(json!({ "state": [{ "anything-but": { "equals-ignore-case": "initializing" }}] }));
    assert!(!not_initializing.matches(&json!({"state": "INITIALIZING"})));
    assert!(not_initializing.matches(&json!({"state": "running"})));
}

#[test]
fn numeric_matching() {
    let counts = pattern(json!({
      "detail": {
        "c-count": [ { "numeric": [ ">", 0, "<=", 5 ] } ],
        "d-count": [ { "numeric": [ "<", 10 ] } ],
        "x-limit": [ { "numeric": [ "=", 3.018e2 ] } ]
      }
    }));
    assert!(counts.matches(&ruler_sample_event()));
    let mut event = ruler_sample_event();
    event["detail"]["c-count"] = json!(6);
    assert!(!counts.matches(&event));
    event["detail"]["c-count"] = json!(0);
    assert!(!counts.matches(&event));
    // Numeric matching only applies to JSON numbers.
    event["detail"]["c-count"] = json!("5");
    assert!(!counts.matches(&event));

    // The comparison-operators table: price more than 10 and at most 20.
    let price = pattern(json!({ "Price": [ { "numeric": [ ">", 10, "<=", 20 ] } ] }));
    assert!(price.matches(&json!({"Price": 20})));
    assert!(!price.matches(&json!({"Price": 10})));
}

#[test]
fn exact_numbers_compare_numerically() {
    let price = pattern(json!({ "Price": [ 300 ] }));
    assert!(price.matches(&json!({"Price": 300})));
    assert!(price.matches(&json!({"Price": 300.0})));
    assert!(price.matches(&serde_json::from_str::<Value>(r#"{"Price": 3.0e2}"#).expect("json")));
    assert!(!price.matches(&json!({"Price": "300"})));
}

#[test]
fn ip_address_matching() {
    let private = pattern(json!({
      "detail": {
        "source-ip": [ { "cidr": "10.0.0.0/24" } ]
      }
    }));
    assert!(private.matches(&ruler_sample_event()));
    let mut event = ruler_sample_event();
    event["detail"]["source-ip"] = json!("10.0.1.33");
    assert!(!private.matches(&event));
}

#[test]
fn exists_matching() {
    let has_state = pattern(json!({
      "detail": {
        "state": [ { "exists": true  } ]
      }
    }));
    let pending = json!({
      "version": "0",
      "id": "7bf73129-1428-4cd3-a780-95db273d1602",
      "detail-type": "EC2 Instance State-change Notification",
      "source": "aws.ec2",
      "account": "123456789012",
      "time": "2015-11-11T21:29:54Z",
      "region": "us-east-1",
      "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
      "detail": {
        "instance-id": "i-abcd1111",
        "state": "pending"
      }
    });
    let without_state = json!({
      "detail-type": [ "EC2 Instance State-change Notification" ],
      "resources": [ "arn:aws:ec2:us-east-1:123456789012:instance/i-02ebd4584a2ebd341" ],
      "detail": {
        "c-count" : {
           "c1" : 100
        }
      }
    });
    assert!(has_state.matches(&pending));
    assert!(!has_state.matches(&without_state));

    let no_c_count = pattern(json!({
      "detail": {
        "c-count": [ { "exists": false  } ]
      }
    }));
    let state_only = json!({
      "detail-type": [ "EC2 Instance State-change Notification" ],
      "resources": [ "arn:aws:ec2:us-east-1:123456789012:instance/i-02ebd4584a2ebd341" ],
      "detail": {
        "state": [ "initializing", "running" ]
      }
    });
    assert!(no_c_count.matches(&state_only));
    // "Exists matching only works on leaf nodes": an object-valued c-count is not a leaf.
    assert!(no_c_count.matches(&without_state));
    assert!(!no_c_count.matches(&ruler_sample_event()));
    // With no `detail` at all, `detail.c-count` is absent too.
    assert!(no_c_count.matches(&json!({"source": "aws.ec2"})));
}

#[test]
fn complex_example_with_multiple_matching() {
    let complex = pattern(json!({
      "time": [ { "prefix": "2017-10-02" } ],
      "detail": {
        "state": [ { "anything-but": "initializing" } ],
        "c-count": [ { "numeric": [ ">", 0, "<=", 5 ] } ],
        "d-count": [ { "numeric": [ "<", 10 ] } ],
        "x-limit": [ { "anything-but": [ 100, 200, 300 ] } ]
      }
    }));
    assert!(complex.matches(&ruler_sample_event()));
    let mut event = ruler_sample_event();
    event["detail"]["x-limit"] = json!(300);
    assert!(!complex.matches(&event));
}

#[test]
fn or_matching() {
    // "$or" examples from the content-filtering page and aws/event-ruler's README.
    let metric_or_namespace = pattern(json!({
      "source": [ "aws.cloudwatch" ],
      "$or": [
        { "metricName": [ "CPUUtilization", "ReadLatency" ] },
        { "namespace": [ "AWS/EC2", "AWS/ES" ] }
      ]
    }));
    assert!(
        metric_or_namespace
            .matches(&json!({"source": "aws.cloudwatch", "metricName": "ReadLatency"}))
    );
    assert!(
        metric_or_namespace.matches(&json!({"source": "aws.cloudwatch", "namespace": "AWS/ES"}))
    );
    assert!(
        !metric_or_namespace.matches(&json!({"source": "aws.cloudwatch", "namespace": "AWS/S3"}))
    );
    assert!(
        !metric_or_namespace.matches(&json!({"source": "aws.ec2", "metricName": "ReadLatency"}))
    );

    let nested = pattern(json!({
      "source": [ "aws.cloudwatch" ],
      "$or": [
        { "metricName": [ "CPUUtilization", "ReadLatency" ] },
        {
          "metricType": [ "MetricType" ] ,
          "namespace": [ "AWS/EC2", "AWS/ES" ],
          "$or" : [
            { "metricId": [ 1234 ] },
            { "spaceId": [ 1000 ] }
          ]
        },
        { "scope": [ "Service" ] }
      ]
    }));
    let event = json!({"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/EC2", "spaceId": 1000});
    assert!(nested.matches(&event));
    let event = json!({"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/EC2", "spaceId": 1001});
    assert!(!nested.matches(&event));
    assert!(nested.matches(&json!({"source": "aws.cloudwatch", "scope": "Service"})));

    let in_detail = pattern(json!({
      "detail": {
        "$or": [
          { "c-count": [ { "numeric": [ ">", 0, "<=", 5 ] } ] },
          { "d-count": [ { "numeric": [ "<", 10 ] } ] },
          { "x-limit": [ { "numeric": [ "=", 3.018e2 ] } ] }
        ]
      }
    }));
    assert!(in_detail.matches(&json!({"detail": {"d-count": 3}})));
    assert!(!in_detail.matches(&json!({"detail": {"d-count": 30}})));
}

#[test]
fn nested_patterns_match_within_one_array_element() {
    // aws/event-ruler README, "JSON Array Matching".
    let event = json!({
      "employees":[
        { "firstName":"John", "lastName":"Doe" },
        { "firstName":"Anna", "lastName":"Smith" },
        { "firstName":"Peter", "lastName":"Jones" }
      ]
    });
    assert!(pattern(json!({ "employees": { "firstName": [ "Anna" ] } })).matches(&event));
    assert!(
        !pattern(json!({ "employees": { "firstName": [ "Anna" ], "lastName": [ "Jones" ] } }))
            .matches(&event)
    );
}

fn parse_error(json: Value) -> PatternError {
    match EventPattern::parse(&json) {
        Ok(_) => panic!("{json} should be rejected"),
        Err(error) => error,
    }
}

#[test]
fn invalid_patterns_are_rejected_with_the_offending_field() {
    let cases = [
        (json!({}), "empty object"),
        (json!(["aws.ec2"]), "must be a JSON object"),
        (json!({"detail": {}}), "field `detail` is an empty object"),
        (
            json!({"source": "aws.ec2"}),
            "field `source` must be an array",
        ),
        (json!({"source": []}), "field `source` has an empty array"),
        (
            json!({"source": [["aws.ec2"]]}),
            "field `source`: match values",
        ),
        (
            json!({"detail": {"state": [{"contains": "x"}]}}),
            "field `detail.state` uses unknown operator `contains`",
        ),
        (
            json!({"source": [{"prefix": "a", "suffix": "b"}]}),
            "more than one operator",
        ),
        (
            json!({"n": [{"numeric": [">", 5, "<", 1]}]}),
            "lower bound 5 must be less than upper bound 1",
        ),
        (
            json!({"n": [{"numeric": ["<", 5, ">", 1]}]}),
            "lower bound (> or >=) followed by an upper bound",
        ),
        (
            json!({"n": [{"numeric": ["~", 5]}]}),
            "unknown operator `~`",
        ),
        (json!({"n": [{"numeric": [">", "5"]}]}), "`numeric` expects"),
        (
            json!({"n": [{"exists": "yes"}]}),
            "`exists` expects true or false",
        ),
        (
            json!({"n": [{"anything-but": ["a", 1]}]}),
            "only strings or only numbers",
        ),
        (
            json!({"n": [{"anything-but": {"prefix": ["a", "b"]}}]}),
            "single string",
        ),
        (
            json!({"n": [{"anything-but": {"numeric": [">", 1]}}]}),
            "does not support `numeric`",
        ),
        (json!({"n": [{"wildcard": "a**b"}]}), "consecutive `*`"),
        (
            json!({"n": [{"cidr": "10.0.0.0"}]}),
            "`cidr` expects an address block",
        ),
        (json!({"$or": [{"a": ["x"]}]}), "at least two"),
        (json!({"$or": {"a": ["x"]}}), "must be an array"),
    ];
    for (json, expected) in cases {
        let message = parse_error(json.clone()).to_string();
        assert!(
            message.contains(expected),
            "{json}: `{message}` lacks `{expected}`"
        );
    }
}

#[test]
fn patterns_parse_from_text() {
    let parsed: EventPattern = r#"{"source": ["closedloop.core"]}"#.parse().expect("valid pattern");
    assert!(parsed.matches(&json!({"source": "closedloop.core"})));
    assert_eq!(parsed.to_string(), r#"{"source":["closedloop.core"]}"#);
    assert!(matches!(
        "{not json".parse::<EventPattern>(),
        Err(PatternError::Json(_))
    ));
}

#[test]
fn patterns_round_trip_through_serde() {
    let written = json!({"detail": {"score": [{"numeric": ["<", 7]}]}});
    let parsed: EventPattern = serde_json::from_value(written.clone()).expect("valid pattern");
    assert_eq!(
        serde_json::to_value(&parsed).expect("serialisable"),
        written
    );
    let invalid = serde_json::from_value::<EventPattern>(json!({"detail": {"score": 7}}));
    let message = invalid
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("field `detail.score` must be an array"),
        "{message}"
    );
}
