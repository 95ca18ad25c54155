#!/usr/bin/env python3
"""After `sam deploy` into ministack: patch the emulator's known gaps, then write the stack's
coordinates for the tests.

1. HTTP API routes. ministack ignores the OpenAPI body that SAM puts on an
   AWS::ApiGatewayV2::Api, so the API exists with no routes. Every `Type: HttpApi` event in
   template.yaml becomes an AWS_PROXY integration (payload 2.0) to its function plus a route.
   Idempotent: a route that already targets the right function is left alone.
2. DynamoDB table settings that ministack's CloudFormation drops: TimeToLiveSpecification and
   PointInTimeRecoverySpecification of every AWS::DynamoDB::Table in the template are applied
   with UpdateTimeToLive / UpdateContinuousBackups when the emulator reports them off.
3. SES sender identity: CreateEmailIdentity for MailFrom unless it exists.
4. Writes `export VAR=...` lines (shell-quoted) to the env file. Queue URLs come back from
   ministack as http://localhost:PORT/...; they are rewritten to 127.0.0.1 (the emulator binds
   IPv4 loopback only, and `localhost` may resolve to ::1 first).

Usage: ministack_post_deploy.py --template template.yaml --stack NAME --mail-from ADDR
           --token-keys KEYS --endpoint http://127.0.0.1:4566 --env-file .emulators/stack.env
Run with the venv's python (boto3, samcli's YAML loader), AWS_* test credentials in the env.
"""

import argparse
import os
import shlex
import sys

import boto3
from botocore.exceptions import ClientError
from samcli.yamlhelper import yaml_parse


def log(msg):
    print(f"post-deploy: {msg}", file=sys.stderr, flush=True)


def http_routes(template):
    """[(method, path, function_logical_id, api_logical_id)] from the template's HttpApi events."""
    routes = []
    for logical_id, res in (template.get("Resources") or {}).items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        for _name, ev in ((res.get("Properties") or {}).get("Events") or {}).items():
            if ev.get("Type") != "HttpApi":
                continue
            props = ev.get("Properties") or {}
            api = props.get("ApiId")
            api_logical = api.get("Ref") if isinstance(api, dict) else "ServerlessHttpApi"
            method = str(props.get("Method", "ANY")).upper()
            path = props.get("Path", "$default")
            fmt = str(props.get("PayloadFormatVersion", "2.0"))
            routes.append((method, path, logical_id, api_logical, fmt))
    return routes


def stack_resources(cfn, stack):
    out = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack):
        for r in page["StackResourceSummaries"]:
            out[r["LogicalResourceId"]] = r
    return out


def ensure_routes(session, template, stack):
    cfn = session.client("cloudformation")
    apigw = session.client("apigatewayv2")
    lam = session.client("lambda")
    resources = stack_resources(cfn, stack)
    wanted = http_routes(template)
    created = 0
    by_api = {}
    for method, path, fn_logical, api_logical, fmt in wanted:
        by_api.setdefault(api_logical, []).append((method, path, fn_logical, fmt))

    for api_logical, items in by_api.items():
        if api_logical not in resources:
            raise SystemExit(f"post-deploy: API {api_logical} is not in stack {stack}")
        api_id = resources[api_logical]["PhysicalResourceId"]
        existing_routes = {r["RouteKey"]: r for r in apigw.get_routes(ApiId=api_id).get("Items", [])}
        integrations = {i["IntegrationId"]: i for i in apigw.get_integrations(ApiId=api_id).get("Items", [])}
        log(f"API {api_id}: {len(existing_routes)} route(s) and {len(integrations)} integration(s) as deployed")
        stages = {s["StageName"] for s in apigw.get_stages(ApiId=api_id).get("Items", [])}
        if "$default" not in stages:
            apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
            log(f"API {api_id}: created the missing $default stage")

        for method, path, fn_logical, fmt in items:
            fn_name = resources[fn_logical]["PhysicalResourceId"]
            fn_arn = lam.get_function(FunctionName=fn_name)["Configuration"]["FunctionArn"]
            route_key = f"{method} {path}"
            route = existing_routes.get(route_key)
            if route:
                target = route.get("Target", "")
                integ = integrations.get(target.split("/", 1)[-1]) if target else None
                if integ and fn_arn in integ.get("IntegrationUri", ""):
                    continue
            integ = apigw.create_integration(
                ApiId=api_id,
                IntegrationType="AWS_PROXY",
                IntegrationMethod="POST",
                IntegrationUri=fn_arn,
                PayloadFormatVersion=fmt,
            )
            target = f"integrations/{integ['IntegrationId']}"
            if route:
                apigw.update_route(ApiId=api_id, RouteId=route["RouteId"], Target=target)
            else:
                apigw.create_route(ApiId=api_id, RouteKey=route_key, Target=target)
            created += 1
            log(f"API {api_id}: route {route_key} -> {fn_name}")
    log(f"routes created or repointed: {created}")
    return created


def ensure_table_settings(session, template, stack):
    cfn = session.client("cloudformation")
    ddb = session.client("dynamodb")
    resources = stack_resources(cfn, stack)
    for logical_id, res in (template.get("Resources") or {}).items():
        if res.get("Type") != "AWS::DynamoDB::Table":
            continue
        props = res.get("Properties") or {}
        name = resources[logical_id]["PhysicalResourceId"]
        ttl = props.get("TimeToLiveSpecification") or {}
        if ttl.get("Enabled") is True:
            cur = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if cur.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                ddb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
                )
                log(f"table {name}: TTL on {ttl['AttributeName']} enabled (CloudFormation left it off)")
        pitr = props.get("PointInTimeRecoverySpecification") or {}
        if pitr.get("PointInTimeRecoveryEnabled") is True:
            cur = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
            if (cur.get("PointInTimeRecoveryDescription") or {}).get("PointInTimeRecoveryStatus") != "ENABLED":
                ddb.update_continuous_backups(
                    TableName=name,
                    PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
                )
                log(f"table {name}: point-in-time recovery enabled (CloudFormation left it off)")


def loopback(url):
    return url.replace("://localhost:", "://127.0.0.1:", 1)


def ensure_ses_identity(session, mail_from):
    ses = session.client("sesv2")
    try:
        ses.get_email_identity(EmailIdentity=mail_from)
        log(f"SES identity {mail_from} exists")
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("NotFoundException", "NotFound"):
            raise
        ses.create_email_identity(EmailIdentity=mail_from)
        log(f"SES identity {mail_from} created")
    ident = ses.get_email_identity(EmailIdentity=mail_from)
    if not ident.get("VerifiedForSendingStatus", False):
        log(f"warning: SES identity {mail_from} is not verified for sending")


def write_env(session, stack, endpoint, env_file, token_keys, mail_from):
    cfn = session.client("cloudformation")
    st = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in st.get("Outputs", [])}
    for key in ("ApiId", "TableName", "EventBusName", "DeadLetterQueueUrl"):
        if key not in outputs:
            raise SystemExit(f"post-deploy: stack output {key} missing (have {sorted(outputs)})")
    values = {
        "CLOSEDLOOP_STACK_NAME": stack,
        "CLOSEDLOOP_STACK_API_URL": f"{endpoint.rstrip('/')}/_aws/execute-api/{outputs['ApiId']}",
        "CLOSEDLOOP_STACK_API_ID": outputs["ApiId"],
        "CLOSEDLOOP_STACK_TABLE": outputs["TableName"],
        "CLOSEDLOOP_STACK_BUS": outputs["EventBusName"],
        "CLOSEDLOOP_STACK_PUBLIC_BASE_URL": outputs.get("PublicBaseUrl", ""),
        "CLOSEDLOOP_STACK_DLQ_URL": loopback(outputs["DeadLetterQueueUrl"]),
        "CLOSEDLOOP_STACK_FAILED_QUEUE_URL": loopback(outputs.get("FailedInvocationsQueueUrl", "")),
        "CLOSEDLOOP_STACK_TOKEN_KEYS": token_keys,
        "CLOSEDLOOP_STACK_MAIL_FROM": mail_from,
    }
    # The functions' physical names, for tests that invoke one directly (the sweeps).
    resources = stack_resources(cfn, stack)
    for logical, var in (
        ("SlaSweepFunction", "CLOSEDLOOP_STACK_SLA_SWEEP_FUNCTION"),
        ("DetractorSweepFunction", "CLOSEDLOOP_STACK_DETRACTOR_SWEEP_FUNCTION"),
        ("SurveySchedulerFunction", "CLOSEDLOOP_STACK_SURVEY_SCHEDULER_FUNCTION"),
    ):
        if logical not in resources:
            raise SystemExit(f"post-deploy: function {logical} is not in stack {stack}")
        values[var] = resources[logical]["PhysicalResourceId"]
    tmp = env_file + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(f"# written by scripts/deploy-ministack.sh for stack {stack}; source it\n")
        for k, v in values.items():
            f.write(f"export {k}={shlex.quote(v)}\n")
    os.replace(tmp, env_file)
    log(f"wrote {env_file}")
    for k, v in values.items():
        if k != "CLOSEDLOOP_STACK_TOKEN_KEYS":
            log(f"  {k}={v}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--template", required=True)
    p.add_argument("--stack", required=True)
    p.add_argument("--mail-from", required=True)
    p.add_argument("--token-keys", required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--env-file", required=True)
    a = p.parse_args()

    with open(a.template) as f:
        template = yaml_parse(f.read())
    session = boto3.session.Session(region_name=os.environ.get("AWS_REGION", "us-east-1"))
    ensure_routes(session, template, a.stack)
    ensure_table_settings(session, template, a.stack)
    ensure_ses_identity(session, a.mail_from)
    write_env(session, a.stack, a.endpoint, a.env_file, a.token_keys, a.mail_from)


if __name__ == "__main__":
    main()
