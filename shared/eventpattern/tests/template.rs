//! Reading routes from a SAM template with every kind of event this crate understands.

use chrono::{TimeZone, Utc};
use closedloop_eventpattern::{HttpRoute, Routes, TemplateError};
use serde_json::json;

const TEMPLATE: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Description: closedloop routing test

Parameters:
  Stage:
    Type: String
    Default: dev

Conditions:
  IsProd: !Equals [!Ref Stage, prod]

Globals:
  Function:
    Runtime: provided.al2023
    Handler: bootstrap
    Environment:
      Variables:
        TABLE_NAME: !Ref Table
        BUS_NAME: !Sub "closedloop-${Stage}"

Resources:
  # Comes before the function it targets on purpose.
  SlaSweepRule:
    Type: AWS::Events::Rule
    Properties:
      ScheduleExpression: rate(5 minutes)
      State: ENABLED
      Targets:
        - Id: sla-sweep
          Arn: !GetAtt SlaSweepFunction.Arn

  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      StreamSpecification:
        StreamViewType: NEW_AND_OLD_IMAGES

  EventBus:
    Type: AWS::Events::EventBus
    Properties:
      Name: !Sub "closedloop-${Stage}"

  DeadLetterQueue:
    Type: AWS::SQS::Queue

  RatingLinkFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: target/lambda/rating-link/
      MemorySize: !If [IsProd, 256, 128]
      Role: !GetAtt FunctionRole.Arn
      Events:
        OpenLink:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Path: /r/{token}
            Method: get

  AdminApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: target/lambda/admin-api/
      Events:
        Admin:
          Type: HttpApi
          Properties:
            Path: /admin/v1/{proxy+}
            Method: ANY
        Legacy:
          Type: Api
          Properties:
            Path: /legacy/{id}
            Method: x-amazon-apigateway-any-method
        CatchAll:
          Type: HttpApi

  RulesFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: target/lambda/rules/
      Events:
        FeedbackReceived:
          Type: EventBridgeRule
          Properties:
            EventBusName: !Ref EventBus
            Pattern:
              source: [closedloop.core]
              detail-type: [FeedbackReceived]
              detail:
                score: [{ numeric: [">=", 0, "<=", 6] }]
            RetryPolicy:
              MaximumRetryAttempts: 3
              MaximumEventAgeInSeconds: 3600
            DeadLetterConfig:
              Arn: !GetAtt DeadLetterQueue.Arn
        Paused:
          Type: EventBridgeRule
          Properties:
            State: DISABLED
            Pattern:
              source: [closedloop.paused]
        Queue:
          Type: SQS
          Properties:
            Queue: !GetAtt DeadLetterQueue.Arn

  SurveySchedulerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: target/lambda/survey-scheduler/
      Events:
        Hourly:
          Type: Schedule
          Properties:
            Schedule: rate(1 hour)
        Nightly:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: cron(0 2 * * ? *)
            ScheduleExpressionTimezone: UTC
            State: DISABLED
        Legacy:
          Type: Schedule
          Properties:
            Schedule: cron(0/15 * * * ? *)
            Enabled: false

  EventRelayFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: target/lambda/event-relay/
      Events:
        Outbox:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Table.StreamArn
            StartingPosition: LATEST
            BatchSize: 25
            FilterCriteria:
              Filters:
                - Pattern: '{"eventName": ["INSERT", "MODIFY"]}'
                - Pattern: '{"dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "OUTBOX#"}]}}}}'

  SlaSweepFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: target/lambda/sla-sweep/

  DetractorSweepFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: target/lambda/detractor-sweep/

  DetractorRule:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !Ref EventBus
      EventPattern:
        source: [closedloop.core]
        detail-type: [{ prefix: Detractor }]
      Targets:
        - Id: detractor-sweep
          Arn:
            Fn::GetAtt: [DetractorSweepFunction, Arn]
          RetryPolicy:
            MaximumRetryAttempts: 0
          DeadLetterConfig:
            Arn: !GetAtt DeadLetterQueue.Arn
        - Id: queue
          Arn: !GetAtt DeadLetterQueue.Arn

  JsonPatternRule:
    Type: AWS::Events::Rule
    Properties:
      EventPattern: '{"source": ["closedloop.sla"]}'
      Targets:
        - Id: rules
          Arn: !GetAtt [RulesFunction, Arn]

  HttpApi:
    Type: AWS::Serverless::HttpApi

Outputs:
  ApiUrl:
    Value: !Sub "https://${HttpApi}.execute-api.${AWS::Region}.amazonaws.com"
"#;

fn routes() -> Routes {
    Routes::from_template_yaml(TEMPLATE).unwrap_or_else(|error| panic!("{error}"))
}

fn http(method: &str, path: &str) -> HttpRoute {
    HttpRoute {
        method: method.to_owned(),
        path: path.to_owned(),
    }
}

#[test]
fn every_serverless_function_is_listed_in_template_order() {
    let ids: Vec<_> = routes()
        .functions
        .iter()
        .map(|function| function.logical_id.clone())
        .collect();
    assert_eq!(
        ids,
        [
            "RatingLinkFunction",
            "AdminApiFunction",
            "RulesFunction",
            "SurveySchedulerFunction",
            "EventRelayFunction",
            "SlaSweepFunction",
            "DetractorSweepFunction",
        ]
    );
    assert!(routes().function("Table").is_none());
}

#[test]
fn http_routes_have_upper_case_methods() {
    let routes = routes();
    let rating = routes.function("RatingLinkFunction").expect("function");
    assert_eq!(rating.http, [http("GET", "/r/{token}")]);
    let admin = routes.function("AdminApiFunction").expect("function");
    assert_eq!(
        admin.http,
        [
            http("ANY", "/admin/v1/{proxy+}"),
            http("ANY", "/legacy/{id}"),
            http("ANY", HttpRoute::DEFAULT_PATH),
        ]
    );
}

#[test]
fn eventbridge_rule_events_carry_pattern_and_delivery_settings() {
    let routes = routes();
    let rules = routes.function("RulesFunction").expect("function");
    // `Paused` is DISABLED and the SQS event is not routed by this crate.
    let names: Vec<_> = rules
        .events
        .iter()
        .map(|event| event.name.as_str())
        .collect();
    assert_eq!(names, ["FeedbackReceived", "JsonPatternRule"]);

    let feedback = &rules.events[0];
    assert_eq!(feedback.max_retries, Some(3));
    assert_eq!(feedback.max_event_age_seconds, Some(3600));
    assert!(feedback.has_dead_letter);
    let detractor = json!({"source": "closedloop.core", "detail-type": "FeedbackReceived", "detail": {"score": 4}});
    let promoter = json!({"source": "closedloop.core", "detail-type": "FeedbackReceived", "detail": {"score": 9}});
    assert!(feedback.pattern.matches(&detractor));
    assert!(!feedback.pattern.matches(&promoter));

    let from_rule = &rules.events[1];
    assert_eq!(from_rule.max_retries, None);
    assert!(!from_rule.has_dead_letter);
    assert!(
        from_rule
            .pattern
            .matches(&json!({"source": "closedloop.sla"}))
    );
}

#[test]
fn schedule_events_keep_their_enabled_state() {
    let routes = routes();
    let scheduler = routes
        .function("SurveySchedulerFunction")
        .expect("function");
    let schedules: Vec<_> = scheduler
        .schedules
        .iter()
        .map(|schedule| {
            (
                schedule.name.as_str(),
                schedule.expression.as_str(),
                schedule.enabled,
            )
        })
        .collect();
    assert_eq!(
        schedules,
        [
            ("Hourly", "rate(1 hour)", true),
            ("Nightly", "cron(0 2 * * ? *)", false),
            ("Legacy", "cron(0/15 * * * ? *)", false),
        ]
    );
    let after = Utc
        .with_ymd_and_hms(2024, 6, 7, 10, 20, 0)
        .single()
        .expect("time");
    assert_eq!(
        scheduler.schedules[1].expression.next_after(after),
        Utc.with_ymd_and_hms(2024, 6, 8, 2, 0, 0).single()
    );
}

#[test]
fn dynamodb_streams_keep_their_filters() {
    let routes = routes();
    let relay = routes.function("EventRelayFunction").expect("function");
    assert_eq!(relay.streams.len(), 1);
    let stream = &relay.streams[0];
    assert_eq!(stream.name, "Outbox");
    assert_eq!(stream.batch_size, Some(25));
    assert_eq!(stream.filters.len(), 2);
    let insert =
        json!({"eventName": "INSERT", "dynamodb": {"NewImage": {"pk": {"S": "FEEDBACK#1"}}}});
    let outbox_remove =
        json!({"eventName": "REMOVE", "dynamodb": {"NewImage": {"pk": {"S": "OUTBOX#7"}}}});
    let ttl_remove =
        json!({"eventName": "REMOVE", "dynamodb": {"OldImage": {"pk": {"S": "OUTBOX#7"}}}});
    assert!(stream.filters[0].matches(&insert));
    assert!(stream.filters[1].matches(&outbox_remove));
    assert!(
        !stream
            .filters
            .iter()
            .any(|filter| filter.matches(&ttl_remove))
    );
}

#[test]
fn standalone_rules_are_attributed_to_their_target_functions() {
    let routes = routes();
    let sla = routes.function("SlaSweepFunction").expect("function");
    assert!(sla.events.is_empty());
    assert_eq!(sla.schedules.len(), 1);
    assert_eq!(sla.schedules[0].name, "SlaSweepRule");
    assert_eq!(sla.schedules[0].expression.as_str(), "rate(5 minutes)");
    assert!(sla.schedules[0].enabled);

    let detractor = routes.function("DetractorSweepFunction").expect("function");
    assert_eq!(detractor.events.len(), 1);
    let event = &detractor.events[0];
    assert_eq!(event.name, "DetractorRule");
    assert_eq!(event.max_retries, Some(0));
    assert!(event.has_dead_letter);
    assert!(
        event
            .pattern
            .matches(&json!({"source": "closedloop.core", "detail-type": "DetractorFound"}))
    );
}

/// A one-function template with the given `Events` entry.
fn with_event(event: &str) -> String {
    format!(
        "Resources:\n  ActionsFunction:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events:\n        Broken:\n{event}"
    )
}

fn template_error(template: &str) -> TemplateError {
    match Routes::from_template_yaml(template) {
        Ok(routes) => panic!("expected an error, got {routes:?}"),
        Err(error) => error,
    }
}

#[test]
fn invalid_events_are_reported_with_function_and_event_names() {
    let cases = [
        (
            "          Type: EventBridgeRule\n          Properties:\n            Pattern:\n              source: closedloop.core\n",
            "function `ActionsFunction`, event `Broken`: bad event pattern: field `source` must be an array",
        ),
        (
            "          Type: EventBridgeRule\n          Properties:\n            Pattern:\n              source: [!Sub \"${AWS::StackName}.core\"]\n",
            "event pattern uses !Sub, which cannot be resolved outside CloudFormation",
        ),
        (
            "          Type: EventBridgeRule\n          Properties:\n            Pattern: {source: [a]}\n            RetryPolicy: {MaximumRetryAttempts: 500}\n",
            "`MaximumRetryAttempts` must be a whole number from 0 to 185",
        ),
        (
            "          Type: Schedule\n          Properties:\n            Schedule: rate(1 hours)\n",
            "function `ActionsFunction`, event `Broken`: invalid rate expression `rate(1 hours)`",
        ),
        (
            "          Type: ScheduleV2\n          Properties:\n            ScheduleExpression: cron(0 9 * * * *)\n",
            "one of day-of-month and day-of-week must be `?`",
        ),
        (
            "          Type: ScheduleV2\n          Properties:\n            ScheduleExpression: cron(0 9 * * ? *)\n            ScheduleExpressionTimezone: Europe/Berlin\n",
            "`ScheduleExpressionTimezone: Europe/Berlin` is not supported",
        ),
        (
            "          Type: HttpApi\n          Properties:\n            Path: !Sub \"/${Stage}/actions\"\n            Method: post\n",
            "`Path` uses !Sub, which cannot be resolved outside CloudFormation",
        ),
        (
            "          Type: HttpApi\n          Properties:\n            Path: /actions\n",
            "needs both `Path` and `Method`",
        ),
        (
            "          Type: Api\n          Properties:\n            Path: /actions\n            Method: FETCH\n",
            "`Method` `FETCH` is not an HTTP method",
        ),
        (
            "          Type: DynamoDB\n          Properties:\n            FilterCriteria:\n              Filters:\n                - Pattern: '{\"eventName\": \"INSERT\"}'\n",
            "field `eventName` must be an array",
        ),
        (
            "          Type: DynamoDB\n          Properties:\n            FilterCriteria:\n              Filters:\n                - Pattern: '{eventName'\n",
            "event pattern is not valid JSON",
        ),
        (
            "          Type: Schedule\n          Properties:\n            Schedule: rate(1 day)\n            Enabled: !If [IsProd, true, false]\n",
            "`Enabled` uses !If",
        ),
        ("          Properties: {}\n", "has no `Type`"),
    ];
    for (event, expected) in cases {
        let message = template_error(&with_event(event)).to_string();
        assert!(message.contains(expected), "`{message}` lacks `{expected}`");
        assert!(
            message.contains("ActionsFunction"),
            "`{message}` does not name the function"
        );
    }
}

#[test]
fn invalid_standalone_rules_name_the_target_function_and_rule() {
    let template = r#"
Resources:
  ActionsFunction:
    Type: AWS::Serverless::Function
  BadRule:
    Type: AWS::Events::Rule
    Properties:
      EventPattern:
        detail:
          score: [{ numeric: [">", 9, "<", 1] }]
      Targets:
        - Id: actions
          Arn: !GetAtt ActionsFunction.Arn
"#;
    let error = template_error(template);
    assert!(matches!(
        &error,
        TemplateError::Pattern { function, event, .. } if function == "ActionsFunction" && event == "BadRule"
    ));
    assert!(
        error
            .to_string()
            .contains("lower bound 9 must be less than upper bound 1")
    );
}

#[test]
fn templates_without_resources_or_valid_yaml_are_rejected() {
    assert!(matches!(
        template_error("AWSTemplateFormatVersion: '2010-09-09'\n"),
        TemplateError::MissingResources
    ));
    assert!(matches!(
        template_error("Resources: [unclosed\n"),
        TemplateError::Yaml(_)
    ));
}

#[test]
fn routes_serialise_for_inspection() {
    let routes = serde_json::to_value(routes()).expect("serialisable");
    let relay = &routes["functions"][4];
    assert_eq!(relay["logical_id"], "EventRelayFunction");
    assert_eq!(
        relay["streams"][0]["filters"][0],
        json!({"eventName": ["INSERT", "MODIFY"]})
    );
    assert_eq!(
        routes["functions"][3]["schedules"][0]["expression"],
        "rate(1 hour)"
    );
}

#[test]
fn refs_to_parameters_read_as_their_defaults() {
    let template = r#"
Parameters:
  ScheduleState:
    Type: String
    Default: DISABLED
  Rate:
    Type: String
    Default: rate(5 minutes)
  NoDefault:
    Type: String
Resources:
  Sweep:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Tick:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: !Ref Rate
            State: !Ref ScheduleState
        Other:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(1 minute)
            State: !Ref NoDefault
"#;
    // A parameter without a default cannot be resolved: still an error naming the event.
    let err = Routes::from_template_yaml(template)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Other"), "{err}");
    let resolvable = template.replace("State: !Ref NoDefault", "State: ENABLED");
    let routes = Routes::from_template_yaml(&resolvable).unwrap();
    let sweep = routes.function("Sweep").unwrap();
    assert_eq!(sweep.schedules[0].expression.as_str(), "rate(5 minutes)");
    assert!(!sweep.schedules[0].enabled);
    assert!(sweep.schedules[1].enabled);
}
