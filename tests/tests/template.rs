//! template.yaml agrees with the code: every function's binary exists in the
//! workspace, every route of the router is routed by the HTTP API, every
//! setting the functions read is set; the expanded templates of every mode
//! have no dependency cycle; the stack's etcd members are replaceable one at
//! a time.

use std::collections::BTreeSet;
use std::path::Path;

use clap::{Args, Command, CommandFactory};
use serde_yaml_ng::Value;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn template() -> Value {
    load("template.yaml")
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).expect(path);
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// A value as YAML text (intrinsic functions included), for "mentions" checks.
fn text(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_default()
}

fn functions(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(k, r)| (k.as_str().unwrap_or_default().to_string(), r))
        .collect()
}

/// Every function `sam build` builds: the Serverless ones and the plain
/// Lambda function of the etcd custom resources.
fn built_functions(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Metadata"]["BuildMethod"].is_string())
        .map(|(k, r)| (k.as_str().unwrap_or_default().to_string(), r))
        .collect()
}

/// Binary names declared by the workspace's function crates.
fn workspace_binaries() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("functions")).expect("functions/") {
        let manifest = entry.expect("entry").path().join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).expect("Cargo.toml");
        let mut in_bin = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin && line.starts_with("name") {
                out.insert(line.split('"').nth(1).unwrap_or_default().to_string());
            }
        }
    }
    out
}

#[test]
fn every_function_binary_exists_in_the_workspace() {
    let t = template();
    let bins = workspace_binaries();
    let fns = built_functions(&t);
    assert_eq!(fns.len(), 5);
    assert_eq!(
        functions(&t).len(),
        4,
        "the service's four are Serverless functions"
    );
    let mut named = BTreeSet::new();
    for (name, f) in fns {
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{name}");
        let code = match f["Type"].as_str() {
            Some("AWS::Serverless::Function") => &f["Properties"]["CodeUri"],
            _ => &f["Properties"]["Code"],
        };
        assert_eq!(code.as_str(), Some("."), "{name}");
        let bin = f["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("Binary")
            .to_string();
        assert!(
            bins.contains(&bin),
            "{name}: binary {bin} is not in the workspace ({bins:?})"
        );
        named.insert(bin);
    }
    assert_eq!(
        named,
        [
            "css-api",
            "css-certs",
            "css-ingest",
            "css-reconcile",
            "css-watch"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(t["Globals"]["Function"]["Runtime"], "provided.al2023");
}

#[test]
fn every_route_is_routed_by_the_http_api() {
    let t = template();
    let mut routes: Vec<(String, String)> = Vec::new();
    for (_, f) in functions(&t) {
        for (_, ev) in f["Properties"]["Events"].as_mapping().into_iter().flatten() {
            if ev["Type"] == "HttpApi" {
                let p = &ev["Properties"];
                routes.push((
                    p["Method"].as_str().unwrap().to_string(),
                    p["Path"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    // The watch routes: written in the API's definition, where WatchTier
    // picks their integration.
    let paths = &t["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["paths"];
    for (path, item) in paths.as_mapping().into_iter().flatten() {
        for (method, _) in item.as_mapping().into_iter().flatten() {
            routes.push((
                method.as_str().unwrap().to_ascii_uppercase(),
                path.as_str().unwrap().to_string(),
            ));
        }
    }
    for css::api::Route {
        method,
        doc: doc_path,
        ..
    } in css::api::ROUTES
    {
        let covered = routes.iter().any(|(m, p)| {
            m == method
                && (p == doc_path
                    || p.strip_suffix("{proxy+}")
                        .is_some_and(|prefix| doc_path.starts_with(prefix)))
        });
        assert!(
            covered,
            "{method} {doc_path} is not routed in template.yaml ({routes:?})"
        );
    }
    assert_eq!(
        routes.len(),
        css::api::ROUTES.len(),
        "no route the router does not serve"
    );
    assert_eq!(
        t["Resources"]["HttpApi"]["Properties"]["Auth"]["DefaultAuthorizer"],
        "AWS_IAM"
    );
}

/// WatchTier picks one integration for every watch route: css-watch, or the
/// Fargate tier through the VPC link with the authorized IAM caller in the
/// header its server mode trusts (CSS_CALLER_HEADER); IAM authorization
/// stays at API Gateway. The tier runs the image on arm64 with the
/// functions' store settings, admits only the VPC link, and reaches etcd
/// through the groups etcd admits.
#[test]
fn the_watch_tier_is_lambda_or_fargate_behind_the_same_routes() {
    let t = template();
    let r = &t["Resources"];
    assert_eq!(t["Parameters"]["WatchTier"]["Default"], "lambda");
    let body = &r["HttpApi"]["Properties"]["DefinitionBody"];
    let mut watch_routes = 0;
    for (_, item) in body["paths"].as_mapping().into_iter().flatten() {
        for (_, method) in item.as_mapping().into_iter().flatten() {
            assert_eq!(
                method["x-amazon-apigateway-integration"]["$ref"],
                "#/components/x-amazon-apigateway-integrations/watch"
            );
            watch_routes += 1;
        }
    }
    let watch_routes_of_router = (css::api::ROUTES.iter())
        .filter(|r| r.doc.starts_with("/v1/stream/") || r.doc.starts_with("/v1/subscriptions"))
        .count();
    assert_eq!(watch_routes, watch_routes_of_router);
    let integration = text(&body["components"]["x-amazon-apigateway-integrations"]["watch"]);
    let (fargate, lambda) = integration
        .split_once("- type: aws_proxy")
        .expect("two branches");
    assert!(fargate.contains("FargateWatch") && fargate.contains("connectionType: VPC_LINK"));
    assert!(
        fargate.contains("!Ref WatchVpcLink") && fargate.contains("!GetAtt WatchDiscovery.Arn")
    );
    assert!(
        fargate.contains("overwrite:header.x-css-caller: $context.identity.userArn"),
        "{fargate}"
    );
    assert!(lambda.contains("${WatchFunction.Arn}"));
    assert_eq!(
        r["WatchFunctionApiPermission"]["Condition"], "LambdaWatch",
        "css-watch is invoked by the API only as the lambda tier"
    );
    assert!(r["WatchFunction"]["Properties"].get("Events").is_none());

    let task = &r["WatchTaskDefinition"]["Properties"];
    assert_eq!(task["RuntimePlatform"]["CpuArchitecture"], "ARM64");
    assert_eq!(t["Parameters"]["WatchTaskCpu"]["Default"], "256");
    assert_eq!(t["Parameters"]["WatchTaskMemory"]["Default"], "512");
    let container = &task["ContainerDefinitions"][0];
    assert_eq!(text(&container["Image"]).trim(), "!Ref WatchImageUri");
    let env: Vec<(String, String)> = (container["Environment"].as_sequence().expect("env"))
        .iter()
        .map(|e| {
            (
                e["Name"].as_str().expect("name").to_string(),
                text(&e["Value"]).trim().to_string(),
            )
        })
        .collect();
    let value = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(value("CSS_CALLER_HEADER").as_deref(), Some("x-css-caller"));
    assert_eq!(value("CSS_COMPACTION_INTERVAL").as_deref(), Some("0s"));
    assert_eq!(
        value("CSS_CURSOR_TABLE").as_deref(),
        Some("!Ref CursorTable")
    );
    // The store settings the functions get, the same.
    let globals = &t["Globals"]["Function"]["Environment"]["Variables"];
    for (k, v) in globals.as_mapping().into_iter().flatten() {
        let k = k.as_str().expect("name");
        if [
            "CSS_ETCD_USERNAME",
            "CSS_ETCD_PASSWORD",
            "CSS_ETCD_CA_FILE",
            "CSS_ETCD_CERT_FILE",
            "CSS_ETCD_KEY_FILE",
            "CSS_METRICS_NAMESPACE",
        ]
        .contains(&k)
        {
            // Empty, files of a Lambda layer, or EMF (server mode serves /metrics).
            continue;
        }
        assert_eq!(value(k), Some(text(v).trim().to_string()), "{k}");
    }
    // Every name is a setting server mode reads.
    let help = css_server::ServerConfig::command()
        .render_long_help()
        .to_string();
    for (name, _) in env.iter().filter(|(n, _)| n.starts_with("CSS_")) {
        assert!(help.contains(name.as_str()), "server mode reads no {name}");
    }

    // Groups: the tier admits the VPC link alone, on 3000; the link reaches
    // only the tier; the tasks also carry the groups etcd admits.
    let ingress = &r["WatchTaskIngress"]["Properties"];
    assert_eq!(
        text(&ingress["SourceSecurityGroupId"]).trim(),
        "!Ref WatchLinkSecurityGroup"
    );
    assert_eq!(ingress["FromPort"].as_u64(), Some(3000));
    assert!(r["WatchTaskSecurityGroup"]["Properties"]
        .get("SecurityGroupIngress")
        .is_none());
    let link_out = &r["WatchLinkSecurityGroup"]["Properties"]["SecurityGroupEgress"];
    assert_eq!(link_out.as_sequence().map(Vec::len), Some(1));
    assert_eq!(
        text(&link_out[0]["DestinationSecurityGroupId"]).trim(),
        "!Ref WatchTaskSecurityGroup"
    );
    let groups = text(
        &r["WatchService"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
            ["SecurityGroups"],
    );
    assert!(
        groups.contains("FunctionsSecurityGroup") && groups.contains("SecurityGroupIds"),
        "{groups}"
    );
    assert_eq!(
        r["WatchService"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
            ["AssignPublicIp"],
        "DISABLED"
    );
    // Every resource of the tier exists only with it.
    for (name, res) in r.as_mapping().into_iter().flatten() {
        let name = name.as_str().expect("name");
        if name.starts_with("Watch")
            && ![
                "WatchFunction",
                "WatchFunctionApiPermission",
                "WatchLogGroup",
                "WatchFunctionErrorsAlarm",
                "WatchFunctionThrottlesAlarm",
            ]
            .contains(&name)
        {
            assert_eq!(res["Condition"], "FargateWatch", "{name}");
        }
    }
    // The mode files check both tiers for cycles.
    let modes = std::fs::read_to_string(root().join("deploy/cycle-modes.txt")).expect("modes");
    assert!(modes.contains("WatchTier=fargate"));
}

#[test]
fn every_setting_the_functions_read_is_set() {
    let t = template();
    let cmd = css::config::StoreArgs::augment_args(Command::new("css"));
    let read: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    assert!(read.contains("CSS_ETCD_ENDPOINTS") && read.contains("CSS_CURSOR_TABLE"));
    let global: BTreeSet<String> = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .expect("global variables")
        .keys()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    let mut set = global.clone();
    for (_, f) in functions(&t) {
        for k in f["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            set.insert(k.as_str().unwrap_or_default().to_string());
        }
    }
    let missing: Vec<&String> = read.difference(&set).collect();
    assert!(
        missing.is_empty(),
        "settings read by the code but not set in template.yaml: {missing:?}"
    );
    // The cursor table only where it is used.
    let watch = &t["Resources"]["WatchFunction"]["Properties"]["Environment"]["Variables"];
    assert!(watch.get("CSS_CURSOR_TABLE").is_some());
    assert!(!global.contains("CSS_CURSOR_TABLE"));
}

/// The member settings (README "Organizations") reach the two functions
/// that read other accounts, from the stack's parameters.
#[test]
fn member_settings_reach_reconcile_and_ingest() {
    let t = template();
    let cmd = css::config::MemberArgs::augment_args(Command::new("css"));
    let read: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    assert_eq!(read.len(), 5, "{read:?}");
    for (function, wanted) in [
        ("ReconcileFunction", read.clone()),
        ("IngestFunction", read.clone()),
    ] {
        let vars = &t["Resources"][function]["Properties"]["Environment"]["Variables"];
        let set: BTreeSet<String> = (vars.as_mapping().into_iter().flatten())
            .filter_map(|(k, _)| {
                k.as_str()
                    .filter(|k| k.starts_with("CSS_MEMBER") || k.starts_with("CSS_PURGE"))
                    .map(String::from)
            })
            .collect();
        assert_eq!(set, wanted, "{function}");
    }
    for function in ["ReconcileFunction", "IngestFunction"] {
        let vars = &t["Resources"][function]["Properties"]["Environment"]["Variables"];
        for (var, param) in [
            ("CSS_MEMBER_ACCOUNTS", "MemberAccounts"),
            ("CSS_MEMBER_REGIONS", "MemberRegions"),
            ("CSS_MEMBER_ROLE_NAME", "MemberRoleName"),
            ("CSS_MEMBER_EXTERNAL_ID", "MemberExternalId"),
            ("CSS_PURGE_FORMER_MEMBERS", "PurgeFormerMembers"),
        ] {
            assert_eq!(text(&vars[var]).trim(), format!("!Ref {param}"));
        }
    }
    // Every value the parameters allow is one the code reads.
    let p = &t["Parameters"];
    for accounts in [
        "",
        "ORGANIZATION",
        "111111111111",
        "111111111111,222222222222",
    ] {
        assert!(
            css::ecs::members::Accounts::parse(accounts).is_ok(),
            "{accounts}"
        );
    }
    let regions = regex::Regex::new(
        p["MemberRegions"]["AllowedPattern"]
            .as_str()
            .expect("pattern"),
    )
    .expect("regex");
    for r in [
        "",
        "eu-west-1",
        "us-east-1,eu-west-1",
        "us-gov-west-1,ap-southeast-2",
    ] {
        assert!(regions.is_match(r), "{r}");
        assert!(css::ecs::members::parse_regions(r).is_ok(), "{r}");
    }
    for bad in ["eu-west", "eu-west-1,", "EU-WEST-1"] {
        assert!(!regions.is_match(bad), "{bad}");
    }
    for purge in ["false", "true"] {
        assert!(p["PurgeFormerMembers"]["AllowedValues"]
            .as_sequence()
            .expect("values")
            .iter()
            .any(|v| v == purge));
        let args = css::config::MemberArgs::augment_args(Command::new("css"))
            .try_get_matches_from(["css", "--purge-former-members", purge])
            .expect("a value the template allows");
        assert_eq!(
            args.get_one::<bool>("purge_former_members"),
            Some(&(purge == "true"))
        );
    }
    assert_eq!(p["MemberRoleName"]["Default"], "css-member-read");
}

/// The cursor table carries the owner index the quota counts through, and
/// the watch function may query it.
#[test]
fn cursor_table_has_the_owner_index() {
    let t = template();
    let table = &t["Resources"]["CursorTable"]["Properties"];
    let indexes = table["GlobalSecondaryIndexes"]
        .as_sequence()
        .expect("GlobalSecondaryIndexes");
    let owner = indexes
        .iter()
        .find(|i| i["IndexName"] == css::cursor::dynamodb::OWNER_INDEX)
        .expect("the owner index");
    let keys: Vec<(&str, &str)> = owner["KeySchema"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap(),
                k["KeyType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, [("principal", "HASH"), ("expiresAt", "RANGE")]);
    let policy =
        serde_yaml_ng::to_string(&t["Resources"]["WatchFunction"]["Properties"]["Policies"])
            .unwrap();
    assert!(policy.contains("dynamodb:Query"), "{policy}");
    assert!(
        policy.contains(&format!("/index/{}", css::cursor::dynamodb::OWNER_INDEX)),
        "{policy}"
    );
}

/// Without EtcdEndpoints the stack creates its etcd: the nested application,
/// its parameters, and the rule that asks for what it needs.
#[test]
fn the_stack_creates_its_etcd_unless_endpoints_are_given() {
    let t = template();
    let p = &t["Parameters"];
    assert_eq!(p["EtcdEndpoints"]["Default"], "");
    assert_eq!(p["EtcdClusterSize"]["Default"], "3");
    assert_eq!(
        text(&p["EtcdClusterSize"]["AllowedValues"]),
        "- '1'\n- '3'\n"
    );
    assert_eq!(p["EtcdInstanceType"]["Default"], "t4g.small");
    assert_eq!(p["EtcdArch"]["Default"], "arm64");
    assert!(p["EtcdDownloadUrl"]["Default"]
        .as_str()
        .is_some_and(|u| u.starts_with("https://")));
    let cluster = &t["Resources"]["EtcdCluster"];
    assert_eq!(cluster["Type"], "AWS::Serverless::Application");
    assert_eq!(cluster["Condition"], "CreateEtcd");
    assert_eq!(
        cluster["Properties"]["Location"],
        "deploy/etcd/template.yaml"
    );
    let nested = load("deploy/etcd/template.yaml");
    for name in cluster["Properties"]["Parameters"]
        .as_mapping()
        .expect("parameters")
        .keys()
    {
        let name = name.as_str().unwrap_or_default();
        assert!(
            nested["Parameters"].get(name).is_some(),
            "{name} is not a parameter of deploy/etcd"
        );
    }
    let rule = text(&t["Rules"]["OwnEtcdNeedsVpcAndChecksum"]);
    for needed in ["VpcId", "EtcdSha256", "EtcdImageId", "EtcdSubnetIds"] {
        assert!(rule.contains(needed), "{needed}: {rule}");
    }
    // The members' subnets are their own parameter, apart from the functions'.
    let passed = text(&cluster["Properties"]["Parameters"]["SubnetIds"]);
    assert!(passed.contains("EtcdSubnetIds"), "{passed}");
    let env = text(&t["Globals"]["Function"]["Environment"]["Variables"]);
    assert!(
        env.contains("EtcdCluster.Outputs.Endpoints")
            && env.contains("EtcdCluster.Outputs.ClientSecretArn")
    );
}

/// Members admit clients only from the functions' group and from each
/// other (css-etcdctl in an SSM session), peers only from each other; they
/// send HTTPS (AWS APIs, the tarball) and etcd traffic to each other only.
#[test]
fn etcd_security_groups_admit_only_the_functions_and_the_members() {
    let nested = load("deploy/etcd/template.yaml");
    let r = &nested["Resources"];
    let group = &r["MemberSecurityGroup"]["Properties"];
    let ingress = group["SecurityGroupIngress"]
        .as_sequence()
        .expect("ingress");
    assert_eq!(ingress.len(), 1);
    assert_eq!(
        (
            ingress[0]["FromPort"].as_u64(),
            ingress[0]["ToPort"].as_u64()
        ),
        (Some(2379), Some(2379))
    );
    assert!(text(&ingress[0]["SourceSecurityGroupId"]).contains("ClientSecurityGroupId"));
    assert!(!text(&group["SecurityGroupIngress"]).contains("CidrIp"));
    let egress = group["SecurityGroupEgress"].as_sequence().expect("egress");
    assert_eq!(egress.len(), 1, "one rule to addresses: HTTPS");
    assert_eq!(
        (
            egress[0]["FromPort"].as_u64(),
            egress[0]["ToPort"].as_u64(),
            egress[0]["IpProtocol"].as_str()
        ),
        (Some(443), Some(443), Some("tcp"))
    );
    for (name, key) in [
        ("PeerIngress", "SourceSecurityGroupId"),
        ("PeerEgress", "DestinationSecurityGroupId"),
    ] {
        let rule = &r[name]["Properties"];
        assert_eq!(
            (rule["FromPort"].as_u64(), rule["ToPort"].as_u64()),
            (Some(2379), Some(2380)),
            "{name}"
        );
        assert!(text(&rule[key]).contains("MemberSecurityGroup"), "{name}");
        assert!(
            text(&rule["GroupId"]).contains("MemberSecurityGroup"),
            "{name}"
        );
    }
    let main = template();
    let sg = text(
        &main["Resources"]["EtcdCluster"]["Properties"]["Parameters"]["ClientSecurityGroupId"],
    );
    assert!(sg.contains("FunctionsSecurityGroup"), "{sg}");
    assert!(text(&main["Globals"]["Function"]["VpcConfig"]).contains("FunctionsSecurityGroup"));
}

/// The CA's secret is under a key of the stack whose Decrypt only the
/// certificate function's role holds, and its secret policy refuses every
/// other reader; the other secrets keep Secrets Manager's own key (members
/// and functions read them).
#[test]
fn the_cas_key_is_read_by_the_certificate_function_alone() {
    let main = template();
    let nested = load("deploy/etcd/template.yaml");
    let r = &nested["Resources"];
    assert_eq!(
        text(&r["CaSecret"]["Properties"]["KmsKeyId"]).trim(),
        "!Ref CaKey"
    );
    for other in [
        "Member0Secret",
        "Member1Secret",
        "Member2Secret",
        "ClientSecret",
    ] {
        assert!(r[other]["Properties"].get("KmsKeyId").is_none(), "{other}");
    }
    let key = &r["CaKey"]["Properties"];
    assert_eq!(key["EnableKeyRotation"], true);
    let statements = key["KeyPolicy"]["Statement"]
        .as_sequence()
        .expect("statements");
    let decrypts = |s: &Value| {
        let actions = text(&s["Action"]);
        [
            "kms:Decrypt",
            "kms:*",
            "kms:ReEncrypt*",
            "kms:ReEncryptFrom",
            "\"*\"",
        ]
        .iter()
        .any(|a| actions.contains(a))
    };
    let readers: Vec<&Value> = statements.iter().filter(|s| decrypts(s)).collect();
    assert_eq!(readers.len(), 1, "one statement decrypts: {statements:?}");
    assert_eq!(readers[0]["Effect"], "Allow");
    assert_eq!(
        text(&readers[0]["Principal"]["AWS"]).trim(),
        "!Ref ResourcesRoleArn"
    );
    assert!(text(&readers[0]["Condition"]).contains("kms:ViaService"));
    let policy = &r["CaSecretPolicy"]["Properties"];
    assert_eq!(text(&policy["SecretId"]).trim(), "!Ref CaSecret");
    let deny = &policy["ResourcePolicy"]["Statement"][0];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Action"], "secretsmanager:GetSecretValue");
    assert_eq!(
        text(&deny["Condition"]["StringNotEquals"]["aws:PrincipalArn"]).trim(),
        "!Ref ResourcesRoleArn"
    );
    assert_eq!(
        text(&main["Resources"]["EtcdCluster"]["Properties"]["Parameters"]["ResourcesRoleArn"])
            .trim(),
        "!GetAtt CertificatesFunctionRole.Arn"
    );
}

/// Leaves renew on a schedule of the etcd stack, through the certificate
/// function, with the secrets the certificate resource fills (the input
/// parses as the function reads it); their lifetime is a parameter; days
/// to the earliest end are alarmed below 14.
#[test]
fn certificates_renew_on_a_schedule_and_their_end_is_alarmed() {
    let main = template();
    let nested = load("deploy/etcd/template.yaml");
    let rule = &nested["Resources"]["RenewalSchedule"];
    assert!(text(&rule["DependsOn"]).contains("Certificates"));
    let p = &rule["Properties"];
    assert_eq!(p["ScheduleExpression"], "rate(12 hours)");
    let target = &p["Targets"][0];
    assert_eq!(text(&target["Arn"]).trim(), "!Ref ResourcesFunctionArn");
    let input = text(&target["Input"]);
    let json = input
        .lines()
        .find(|l| l.contains("Renew"))
        .expect("the input's JSON")
        .trim()
        .trim_start_matches("- ")
        .trim_matches('\'');
    let resolved = json
        .replace("${SecretPrefix}", "css")
        .replace("${CaSecret}", "arn:ca")
        .replace("${ClientSecret}", "arn:client")
        .replace("${Members}", "arn:m0\",\"arn:m1\",\"arn:m2");
    let event: serde_json::Value = serde_json::from_str(&resolved).expect("JSON input");
    let targets = css_certs::renew::targets(&event)
        .expect("a renewal event")
        .expect("the function reads it");
    assert_eq!(targets.member_secret_arns, ["arn:m0", "arn:m1", "arn:m2"]);
    assert_eq!(
        (
            targets.ca_secret_arn.as_str(),
            targets.client_secret_arn.as_str()
        ),
        ("arn:ca", "arn:client")
    );
    let members = text(&target["Input"]);
    assert!(members.contains("Member2Secret") && members.contains("Three"));
    let permission = &nested["Resources"]["RenewalPermission"]["Properties"];
    assert_eq!(permission["Principal"], "events.amazonaws.com");
    assert_eq!(
        text(&permission["SourceArn"]).trim(),
        "!GetAtt RenewalSchedule.Arn"
    );

    let env = &main["Resources"]["CertificatesFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        text(&env["CSS_CERT_VALIDITY_DAYS"]).trim(),
        "!Ref CertificateValidityDays"
    );
    let param = &main["Parameters"]["CertificateValidityDays"];
    assert_eq!(param["Default"].as_u64(), Some(365));
    let renew_days: u64 = env["CSS_CERT_RENEW_DAYS"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("renewal lead");
    assert!(
        param["MinValue"]
            .as_u64()
            .is_some_and(|m| m > 2 * renew_days),
        "every allowed lifetime renews: css_certs::Policy refuses one under twice the lead"
    );
    for days in [
        param["MinValue"].as_u64(),
        param["MaxValue"].as_u64(),
        Some(365),
    ] {
        let days = days.expect("bound").to_string();
        let lead = renew_days.to_string();
        assert!(
            css_certs::Policy::from_days(Some(&days), Some(&lead)).is_ok(),
            "{days}"
        );
    }
    let alarm = &main["Resources"]["EtcdCertificateExpiryAlarm"]["Properties"];
    assert_eq!(alarm["MetricName"], css::metrics::ETCD_CERT_DAYS_LEFT);
    assert_eq!(alarm["Threshold"].as_u64(), Some(14));
    assert_eq!(alarm["ComparisonOperator"], "LessThanThreshold");
    assert_eq!(alarm["TreatMissingData"], "breaching");
    assert_eq!(
        text(&alarm["Dimensions"][0]["Value"]).trim(),
        "!Ref CertificatesFunction"
    );
}

/// Every grant on Secrets Manager in both templates: members read their own
/// certificates, the functions read the client's (and a bring-your-own
/// secret), the certificate function writes the stack's etcd secrets. No
/// secret value is resolved into an environment variable.
#[test]
fn certificate_secrets_reach_only_the_functions_and_the_members() {
    let main = template();
    let nested = load("deploy/etcd/template.yaml");
    let member_policy = text(&nested["Resources"]["MemberRole"]["Properties"]["Policies"]);
    assert!(member_policy.contains("secretsmanager:GetSecretValue"));
    assert!(
        member_policy.contains("Member0Secret")
            && !member_policy.contains("ClientSecret")
            && !member_policy.contains("CaSecret"),
        "{member_policy}"
    );
    let mut grants = nested["Resources"].clone();
    if let Some(m) = grants.as_mapping_mut() {
        // A Deny, checked in `the_cas_key_is_read_by_the_certificate_function_alone`.
        m.remove("CaSecretPolicy");
    }
    assert_eq!(
        actions(&text(&grants)),
        ["secretsmanager:GetSecretValue"],
        "members only read"
    );

    let read = text(&main["Resources"]["EtcdSecretsPolicy"]["Properties"]["PolicyDocument"]);
    assert!(
        read.contains("secretsmanager:GetSecretValue") && read.contains("ClientSecretArn"),
        "{read}"
    );
    // The CA's key is read by the certificate function alone.
    let outputs = text(&nested["Outputs"]);
    assert!(!outputs.contains("CaSecret"), "{outputs}");
    let write = text(&main["Resources"]["CertificatesFunctionRole"]["Properties"]["Policies"]);
    assert!(
        write.contains("secretsmanager:PutSecretValue")
            && write.contains("${AWS::StackName}-etcd-*"),
        "{write}"
    );
    assert_eq!(
        actions(&text(&main["Resources"])),
        [
            "secretsmanager:GetSecretValue",
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue"
        ],
        "the functions read; the certificate function reads (the CA) and writes"
    );
    for (name, f) in functions(&main)
        .into_iter()
        .filter(|(n, _)| n != "CertificatesFunction")
    {
        assert!(
            text(&f["Properties"]["Policies"]).contains("EtcdSecretsPolicy"),
            "{name}"
        );
    }
    let all = std::fs::read_to_string(root().join("template.yaml")).expect("template");
    assert!(
        !all.contains("resolve:secretsmanager"),
        "a secret value in the environment"
    );
}

/// IMDSv2 only, encrypted gp3 data volumes snapshotted on delete or
/// replacement in their member's zone, and the user data is
/// deploy/etcd/boot.sh verbatim.
#[test]
fn etcd_members_boot_from_the_script_in_the_repository() {
    let nested = load("deploy/etcd/template.yaml");
    let r = &nested["Resources"];
    let data = &r["MemberLaunchTemplate"]["Properties"]["LaunchTemplateData"];
    assert_eq!(data["MetadataOptions"]["HttpTokens"], "required");
    assert_eq!(data["MetadataOptions"]["InstanceMetadataTags"], "enabled");
    assert!(
        data.get("NetworkInterfaces").is_none(),
        "interfaces are attached at boot"
    );
    for i in 0..3 {
        let v = &r[&format!("Member{i}Volume")];
        assert_eq!(v["DeletionPolicy"], "Snapshot");
        assert_eq!(v["UpdateReplacePolicy"], "Snapshot");
        assert_eq!(v["Properties"]["Encrypted"], true);
        assert_eq!(v["Properties"]["VolumeType"], "gp3");
        assert_eq!(
            text(&v["Properties"]["AvailabilityZone"]).trim(),
            format!("!GetAtt Placement.Zone{i}")
        );
    }
    let user_data = text(&data["UserData"]);
    for setting in [
        "MEMBER_IPS",
        "MEMBER_SECRETS",
        "MEMBER_INTERFACES",
        "MEMBER_VOLUMES",
        "CFN_STACK",
    ] {
        assert!(
            user_data.contains(&format!("export {setting}="))
                || user_data.contains(&format!(" {setting}=")),
            "{setting}"
        );
    }
    let script = std::fs::read_to_string(root().join("deploy/etcd/boot.sh")).expect("boot.sh");
    // Without its shebang and comment lines, as scripts/embed-boot.sh embeds it.
    let body: String = (script.lines().skip(1))
        .filter(|l| {
            let t = l.trim_start();
            !(t == "#" || t.starts_with("# "))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let parts: Value = serde_yaml_ng::from_str(&user_data).expect("user data");
    let embedded = find_string(&parts, &body);
    assert!(
        embedded,
        "deploy/etcd/template.yaml does not hold boot.sh as it is: run scripts/embed-boot.sh"
    );
    // EC2 refuses user data above 16 KB (before base64). The settings in
    // front of the script at their longest: a 128-character stack name in
    // every secret's name and ARN.
    let stack = "s".repeat(128);
    let arn = |i: usize| {
        format!("arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:{stack}-etcd-member-{i}-AbCdEf")
    };
    let settings = format!(
        "export MEMBER_IPS=10.100.100.100,10.100.100.101,10.100.100.102\nexport MEMBER_SECRETS={},{},{}\n\
         export MEMBER_INTERFACES=eni-0123456789abcdef0,eni-0123456789abcdef1,eni-0123456789abcdef2\n\
         export MEMBER_VOLUMES=vol-0123456789abcdef0,vol-0123456789abcdef1,vol-0123456789abcdef2\n\
         export ETCD_VERSION=v3.5.21 ETCD_SHA256={} ETCD_DOWNLOAD_URL=https://github.com/etcd-io/etcd/releases/download ETCD_ARCH=arm64\n\
         export ETCD_QUOTA_BACKEND_BYTES=8589934592 ETCD_SNAPSHOT_COUNT=10000 CLUSTER_TOKEN={stack}-etcd\n\
         export AWS_DEFAULT_REGION=us-gov-west-1 CFN_STACK={stack}\n",
        arn(0),
        arn(1),
        arn(2),
        "0".repeat(64)
    );
    let size = "#!/bin/bash\n".len() + settings.len() + body.len();
    assert!(
        size <= 16 * 1024,
        "the members' user data would be {size} bytes: EC2 takes 16,384"
    );
}

/// Each member is an Auto Scaling group of one in its own subnet: an update
/// terminates the old instance, then waits for the new one's signal (sent by
/// boot.sh once it serves), and each group waits for the one before, so
/// members go one at a time. The AMI is a pinned parameter, never an SSM
/// path re-read on every update.
#[test]
fn members_are_replaced_one_at_a_time_each_gated_on_its_health() {
    let main = template();
    let nested = load("deploy/etcd/template.yaml");
    let r = &nested["Resources"];
    assert!(resources_of(&nested, "AWS::EC2::Instance").is_empty());
    for i in 0..3 {
        let g = &r[&format!("Member{i}Group")];
        assert_eq!(g["Type"], "AWS::AutoScaling::AutoScalingGroup");
        let p = &g["Properties"];
        assert_eq!(
            (p["MinSize"].as_str(), p["MaxSize"].as_str()),
            (Some("1"), Some("1"))
        );
        assert_eq!(
            text(&p["VPCZoneIdentifier"]).trim(),
            format!("- !Select\n  - {i}\n  - !Ref SubnetIds")
        );
        assert!(
            text(&p["Tags"]).contains(&format!("Value: '{i}'")),
            "member tag"
        );
        let update = &g["UpdatePolicy"]["AutoScalingRollingUpdate"];
        assert_eq!(update["MaxBatchSize"].as_u64(), Some(1));
        assert_eq!(
            update["MinInstancesInService"].as_u64(),
            Some(0),
            "the old instance lets go of the interface and volume first"
        );
        assert_eq!(update["WaitOnResourceSignals"], true);
        assert_eq!(
            g["CreationPolicy"]["ResourceSignal"]["Count"].as_u64(),
            Some(1)
        );
        let deps = text(&g["DependsOn"]);
        assert!(deps.contains("Certificates"), "{deps}");
        if i > 0 {
            assert!(
                deps.contains(&format!("Member{}Group", i - 1)),
                "m{i} waits for m{}",
                i - 1
            );
        }
    }
    let lt = &r["MemberLaunchTemplate"]["Properties"]["LaunchTemplateData"];
    assert_eq!(text(&lt["ImageId"]).trim(), "!Ref ImageId");
    assert_eq!(
        nested["Parameters"]["ImageId"]["Type"],
        "AWS::EC2::Image::Id"
    );
    assert!(nested["Parameters"]["ImageId"].get("Default").is_none());
    let ami = &main["Parameters"]["EtcdImageId"];
    assert_eq!(ami["Default"], "");
    assert!(
        !text(&main).contains("/aws/service/ami-amazon-linux-latest"),
        "no AMI re-resolved on update"
    );
    // Boot signals its own group, and may: the role grants exactly that.
    let script = std::fs::read_to_string(root().join("deploy/etcd/boot.sh")).expect("boot.sh");
    assert!(script.contains("--logical-resource-id \"Member${index}Group\""));
    let role = text(&r["MemberRole"]["Properties"]);
    for grant in [
        "cloudformation:SignalResource",
        "ec2:AttachNetworkInterface",
        "ec2:AttachVolume",
        "AmazonSSMManagedInstanceCore",
    ] {
        assert!(role.contains(grant), "{grant}");
    }
}

/// The custom resources' function is no service function: outside the VPC
/// (it must not reach etcd's client port, nor need NAT), without the etcd
/// settings, and never retried by Lambda once it has answered.
#[test]
fn the_certificate_function_is_outside_the_vpc_and_runs_once_per_request() {
    let t = template();
    let f = &t["Resources"]["CertificatesFunction"];
    assert_eq!(f["Type"], "AWS::Lambda::Function");
    assert!(f["Properties"].get("VpcConfig").is_none());
    let env = text(&f["Properties"]["Environment"]);
    assert!(
        !env.contains("CSS_ETCD") && !env.contains("EtcdCluster"),
        "{env}"
    );
    let invoke = &t["Resources"]["CertificatesFunctionInvokeConfig"]["Properties"];
    assert_eq!(invoke["MaximumRetryAttempts"].as_u64(), Some(0));
    assert_eq!(
        text(&invoke["FunctionName"]).trim(),
        "!Ref CertificatesFunction"
    );
    let nested = load("deploy/etcd/template.yaml");
    for resource in ["Placement", "Certificates"] {
        assert_eq!(
            text(&nested["Resources"][resource]["Properties"]["ServiceToken"]).trim(),
            "!Ref ResourcesFunctionArn"
        );
    }
}

/// Every EtcdTimeout the rule allows is a duration the functions parse, and
/// leaves a request room inside the functions' 29 s; RecordCacheMb cannot
/// pass half the smallest function's memory.
#[test]
fn etcd_timeout_and_record_cache_fit_the_functions() {
    let t = template();
    let rule = &t["Rules"]["EtcdTimeoutFitsTheFunctions"]["Assertions"][0]["Assert"];
    let allowed: Vec<String> =
        serde_yaml_ng::from_str::<Value>(&text(rule).replace("!Contains", ""))
            .ok()
            .and_then(|v| v.as_sequence().and_then(|s| s.first().cloned()))
            .and_then(|v| v.as_sequence().cloned())
            .expect("the rule's list")
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
    assert!(allowed.len() >= 10, "{allowed:?}");
    assert!(allowed.contains(
        &t["Parameters"]["EtcdTimeout"]["Default"]
            .as_str()
            .unwrap_or("")
            .to_string()
    ));
    for value in &allowed {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            store: css::config::StoreArgs,
        }
        let cli = Cli::try_parse_from(["css", "--etcd-timeout", value])
            .unwrap_or_else(|e| panic!("{value}: {e}"));
        let d = cli.store.etcd_timeout;
        assert!(
            d >= std::time::Duration::from_millis(500) && d <= std::time::Duration::from_secs(20),
            "{value}"
        );
    }
    let cache_max = t["Parameters"]["RecordCacheMb"]["MaxValue"]
        .as_u64()
        .expect("MaxValue");
    let smallest = built_functions(&t)
        .iter()
        .filter(|(n, _)| n != "CertificatesFunction")
        .map(|(_, f)| {
            f["Properties"]["MemorySize"]
                .as_u64()
                .unwrap_or(t["Globals"]["Function"]["MemorySize"].as_u64().unwrap_or(0))
        })
        .min()
        .expect("functions");
    assert!(
        cache_max * 2 <= smallest,
        "RecordCacheMb up to {cache_max} in a {smallest} MB function"
    );
}

/// The project's own check (scripts/cfn-cycles.py): the SAM translator's
/// output of template.yaml, conditions resolved for every mode of
/// deploy/cycle-modes.txt (own etcd of 3 and of 1 member, a given etcd;
/// the lambda and the Fargate watch tier),
/// and the nested etcd template as each mode passes it: no dependency
/// cycle through Ref, GetAtt, Sub or DependsOn.
#[test]
fn no_dependency_cycle_in_any_mode() {
    let out = cycles(&[
        "template.yaml",
        "--modes",
        "deploy/cycle-modes.txt",
        "--nested",
        "EtcdCluster=deploy/etcd/template.yaml",
    ]);
    assert!(out.0, "{}", out.1);
    assert!(
        out.1.contains(
            "no dependency cycle in 12 expanded templates (own-3, own-1, given, given-tls, own-3-fargate, given-tls-fargate, own-3-members, given-organization)"
        ),
        "{}",
        out.1
    );
    let out = cycles(&[
        "deploy/member/template.yaml",
        "--modes",
        "deploy/member/cycle-modes.txt",
    ]);
    assert!(out.0, "{}", out.1);
    assert!(
        out.1
            .contains("no dependency cycle in 2 expanded templates (role-region, other-region)"),
        "{}",
        out.1
    );
}

fn cycles(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(css_tests::moto::python())
        .arg(root().join("scripts/cfn-cycles.py"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run scripts/cfn-cycles.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The check finds a cycle through each kind of edge, in the SAM
/// translator's output (the Globals' environment reaching the function
/// itself, as the default stack once did), only in the mode whose
/// conditions close it.
#[test]
fn the_cycle_check_finds_every_kind_of_edge() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).expect("fixture");
        path.to_string_lossy().into_owned()
    };
    let queue = |props: &str| format!("  {props}\n");
    for (edge, a, b) in [
        (
            "Ref",
            "Tags: [{Key: k, Value: !Ref B}]",
            "Tags: [{Key: k, Value: !Ref A}]",
        ),
        (
            "GetAtt",
            "Tags: [{Key: k, Value: !GetAtt B.Arn}]",
            "Tags: [{Key: k, Value: !GetAtt A.Arn}]",
        ),
        (
            "Sub",
            "Tags: [{Key: k, Value: !Sub \"${B.Arn}\"}]",
            "Tags: [{Key: k, Value: !Sub \"x-${A}\"}]",
        ),
    ] {
        let body = format!(
            "Resources:\n  A:\n    Type: AWS::SQS::Queue\n    Properties:\n    {}  B:\n    Type: AWS::SQS::Queue\n    Properties:\n    {}",
            queue(a), queue(b)
        );
        let (ok, out) = cycles(&[&write(&format!("{edge}.yaml"), &body)]);
        assert!(!ok, "{edge}: {out}");
        assert!(
            out.contains("dependency cycle A -> B -> A"),
            "{edge}: {out}"
        );
    }
    let depends = "Resources:\n  A:\n    Type: AWS::SQS::Queue\n    DependsOn: B\n  B:\n    Type: AWS::SQS::Queue\n    DependsOn: [A]\n";
    let (ok, out) = cycles(&[&write("depends.yaml", depends)]);
    assert!(!ok && out.contains("dependency cycle A -> B -> A"), "{out}");

    // The default stack's old cycle, in miniature: the Globals' environment
    // reads the nested stack, which is handed the function's ARN. Only the
    // "own" mode creates the nested stack, so only it has the cycle.
    let sam = r#"Transform: AWS::Serverless-2016-10-31
Parameters:
  Endpoints: {Type: String, Default: ""}
Conditions:
  Own: !Equals [!Ref Endpoints, ""]
Globals:
  Function:
    Environment:
      Variables:
        ENDPOINTS: !If [Own, !GetAtt Nested.Outputs.Endpoints, !Ref Endpoints]
Resources:
  Nested:
    Type: AWS::Serverless::Application
    Condition: Own
    Properties:
      Location: nested.yaml
      Parameters: {Token: !GetAtt Certs.Arn}
  Certs:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: ., Handler: bootstrap, Runtime: provided.al2023}
"#;
    let path = write("sam.yaml", sam);
    let (ok, out) = cycles(&[
        &path,
        "--mode",
        "own=Endpoints=",
        "--mode",
        "given=Endpoints=https://10.0.0.1:2379",
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("[own]: dependency cycle Certs -> Nested -> Certs"),
        "{out}"
    );
    assert!(!out.contains("[given]"), "{out}");
}

/// The Secrets Manager actions named in a text (not ARNs, which say
/// "secretsmanager:" too).
fn actions(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .match_indices("secretsmanager:")
        .map(|(i, _)| &text[i..])
        .filter(|rest| rest["secretsmanager:".len()..].starts_with(char::is_uppercase))
        .map(|rest| {
            rest.split(|c: char| !c.is_alphanumeric() && c != ':')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    out.sort();
    out
}

fn find_string(v: &Value, wanted: &str) -> bool {
    match v {
        Value::String(s) => s == wanted,
        Value::Sequence(items) => items.iter().any(|i| find_string(i, wanted)),
        Value::Mapping(m) => m.values().any(|i| find_string(i, wanted)),
        Value::Tagged(t) => find_string(&t.value, wanted),
        _ => false,
    }
}

fn resources_of<'a>(t: &'a Value, kind: &str) -> Vec<(String, &'a Value)> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(k, r)| (k.as_str().unwrap_or_default().to_string(), r))
        .collect()
}

/// Every alarm notifies the stack's topic (or AlarmTopicArn), and the alarms
/// an operator needs exist: dead letters, ingest stalled, EventBridge
/// delivery, API 5xx, each function's errors and throttles.
#[test]
fn every_alarm_notifies_someone() {
    let t = template();
    let alarms = resources_of(&t, "AWS::CloudWatch::Alarm");
    for (name, a) in &alarms {
        let actions = text(&a["Properties"]["AlarmActions"]);
        assert!(
            actions.contains("AlarmTopicArn") && actions.contains("AlarmTopic"),
            "{name}: {actions}"
        );
    }
    let names: BTreeSet<String> = alarms.iter().map(|(n, _)| n.clone()).collect();
    for want in [
        "IngestLagAlarm",
        "ReconcileDriftAlarm",
        "DeadLetterAlarm",
        "IngestStalledAlarm",
        "RuleFailedInvocationsAlarm",
        "Api5xxAlarm",
    ] {
        assert!(names.contains(want), "{want} missing: {names:?}");
    }
    for (f, _) in functions(&t)
        .into_iter()
        .filter(|(n, _)| n != "CertificatesFunction")
    {
        for kind in ["Errors", "Throttles"] {
            assert!(
                names.contains(&format!("{f}{kind}Alarm")),
                "{f} has no {kind} alarm"
            );
        }
    }
    let sub = &t["Resources"]["AlarmEmailSubscription"];
    assert_eq!(sub["Condition"], "HasAlarmEmail");
    assert_eq!(sub["Properties"]["Protocol"], "email");
    // EventBridge retries, then dead-letters what it cannot deliver.
    let target = &t["Resources"]["EcsEventsRule"]["Properties"]["Targets"][0];
    assert!(text(&target["DeadLetterConfig"]).contains("RuleDeadLetterQueue"));
    assert!(target["RetryPolicy"]["MaximumRetryAttempts"]
        .as_u64()
        .is_some());
}

/// Each function logs into its own group kept LogRetentionDays (default 30);
/// the API writes access logs (route, status, latency, principal).
#[test]
fn every_function_has_a_log_group_with_retention() {
    let t = template();
    assert_eq!(t["Parameters"]["LogRetentionDays"]["Default"], 30);
    for (f, def) in built_functions(&t) {
        let group = text(&def["Properties"]["LoggingConfig"]["LogGroup"]);
        let name = group.trim().trim_start_matches("!Ref").trim().to_string();
        let g = &t["Resources"][name.as_str()];
        assert_eq!(g["Type"], "AWS::Logs::LogGroup", "{f}: {group}");
        assert!(
            text(&g["Properties"]["RetentionInDays"]).contains("LogRetentionDays"),
            "{f}"
        );
    }
    let api = &t["Resources"]["HttpApi"]["Properties"];
    assert!(text(&api["AccessLogSettings"]["DestinationArn"]).contains("ApiAccessLogGroup"));
    let format = api["AccessLogSettings"]["Format"].as_str().expect("format");
    for field in ["routeKey", "status", "responseLatency", "userArn"] {
        assert!(format.contains(field), "access log lacks {field}");
    }
}

/// Concurrency and cost guards, and a batching window whenever batches are
/// larger than 10 (Lambda refuses the deploy otherwise).
#[test]
fn guards_and_the_batching_window_rule_hold() {
    let t = template();
    let p = &t["Parameters"];
    assert_eq!(p["IngestMaxConcurrency"]["Default"], 5);
    let queue = &t["Resources"]["IngestFunction"]["Properties"]["Events"]["Queue"]["Properties"];
    assert!(text(&queue["ScalingConfig"]["MaximumConcurrency"]).contains("IngestMaxConcurrency"));
    let watch = &t["Resources"]["WatchFunction"]["Properties"];
    assert!(text(&watch["ReservedConcurrentExecutions"]).contains("WatchReservedConcurrency"));
    let routes = &t["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"];
    assert!(text(&routes["ThrottlingRateLimit"]).contains("ApiThrottleRate"));
    assert!(text(&routes["ThrottlingBurstLimit"]).contains("ApiThrottleBurst"));
    let rule = text(&t["Rules"]["BigBatchesNeedAWindow"]);
    assert!(
        rule.contains("IngestBatchSize") && rule.contains("IngestBatchingWindowSeconds"),
        "{rule}"
    );
    for n in 1..=10 {
        assert!(
            rule.contains(&format!("'{n}'")),
            "batch size {n} needs no window: {rule}"
        );
    }
    // The defaults satisfy it.
    assert_eq!(p["IngestBatchSize"]["Default"], 100);
    assert!(p["IngestBatchingWindowSeconds"]["Default"].as_u64() >= Some(1));
}

/// Every statement of a function's inline policies.
fn statements(t: &Value, function: &str) -> Vec<Value> {
    let policies = &t["Resources"][function]["Properties"]["Policies"];
    (policies.as_sequence().into_iter().flatten())
        .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default())
        .collect()
}

fn grants(t: &Value, function: &str, action: &str) -> Vec<Value> {
    statements(t, function)
        .into_iter()
        .filter(|s| {
            s["Action"] == action
                || (s["Action"].as_sequence()).is_some_and(|a| a.iter().any(|x| x == action))
        })
        .collect()
}

#[test]
fn services_are_read_only_in_the_stacks_account_and_members_through_their_role() {
    let t = template();
    // Any Region of the stack's own account (MemberRegions may name others).
    let own_services = "arn:${AWS::Partition}:ecs:*:${AWS::AccountId}:service/*";
    for function in ["IngestFunction", "ReconcileFunction"] {
        let g = grants(&t, function, "ecs:DescribeServices");
        assert_eq!(g.len(), 1, "{function}: {g:?}");
        assert_eq!(
            text(&g[0]["Resource"]).trim(),
            format!("!Sub {own_services}"),
            "{function}"
        );
        // Other accounts only through their read role, and only with members.
        let assume = member_grants(&t, function, "sts:AssumeRole");
        assert_eq!(assume.len(), 1, "{function}: {assume:?}");
        assert_eq!(
            text(&assume[0]["Resource"]).trim(),
            "!Sub arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"
        );
    }
    let list = grants(&t, "ReconcileFunction", "ecs:ListServices");
    assert_eq!(list.len(), 1);
    assert_eq!(
        text(&list[0]["Condition"]["ArnLike"]["ecs:cluster"]).trim(),
        "!Sub arn:${AWS::Partition}:ecs:*:${AWS::AccountId}:cluster/*"
    );
    assert!(grants(&t, "IngestFunction", "ecs:ListServices").is_empty());
    assert_eq!(
        member_grants(&t, "ReconcileFunction", "organizations:ListAccounts").len(),
        1
    );
    assert!(member_grants(&t, "IngestFunction", "organizations:ListAccounts").is_empty());
    for function in ["ApiFunction", "WatchFunction"] {
        assert!(grants(&t, function, "ecs:DescribeServices").is_empty());
        assert!(member_grants(&t, function, "sts:AssumeRole").is_empty());
    }
}

/// The condition and branches of an `!If`.
fn if_branches(v: &Value) -> Option<&Vec<Value>> {
    match v {
        Value::Tagged(t) if t.tag == "If" => t.value.as_sequence(),
        _ => None,
    }
}

/// Statements granted only under a condition (`!If [C, statement, NoValue]`).
fn member_grants(t: &Value, function: &str, action: &str) -> Vec<Value> {
    statements(t, function)
        .into_iter()
        .filter_map(|s| {
            let when = if_branches(&s)?;
            assert_eq!(text(&when[2]).trim(), "!Ref AWS::NoValue", "{function}");
            let granted = &when[1];
            (granted["Action"] == action).then(|| granted.clone())
        })
        .collect()
}

/// Every kind of ECS event the ingest reads reaches the queue, from this
/// account and (with members) from the central bus.
#[test]
fn every_ecs_event_the_ingest_reads_is_routed_to_the_queue() {
    let t = template();
    let read = [
        css::events::TASK_STATE_CHANGE,
        css::events::INSTANCE_STATE_CHANGE,
        css::events::SERVICE_ACTION,
        css::events::DEPLOYMENT_STATE_CHANGE,
    ];
    for rule in ["EcsEventsRule", "MemberEventsRule"] {
        let p = &t["Resources"][rule]["Properties"];
        let types: Vec<&str> = (p["EventPattern"]["detail-type"].as_sequence())
            .expect("detail-type")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(types, read, "{rule}");
        assert_eq!(p["EventPattern"]["source"][0], "aws.ecs");
        assert_eq!(
            text(&p["Targets"][0]["Arn"]).trim(),
            "!GetAtt EventsQueue.Arn",
            "{rule}"
        );
    }
    // The member template forwards the same events.
    let m = load("deploy/member/template.yaml");
    let forwarded = &m["Resources"]["ForwardEcsEvents"]["Properties"]["EventPattern"];
    assert_eq!(
        forwarded,
        &t["Resources"]["EcsEventsRule"]["Properties"]["EventPattern"]
    );
    // The queue and the rules' dead-letter queue admit both rules.
    for policy in ["EventsQueuePolicy", "RuleDeadLetterQueuePolicy"] {
        let arns = text(
            &t["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"][0]["Condition"]
                ["ArnEquals"]["aws:SourceArn"],
        );
        assert!(
            arns.contains("!GetAtt EcsEventsRule.Arn"),
            "{policy}: {arns}"
        );
        assert!(
            arns.contains("HasMembers") && arns.contains("!GetAtt MemberEventsRule.Arn"),
            "{policy}: {arns}"
        );
    }
}

/// The central bus admits the organization (aws:PrincipalOrgID) or the
/// listed accounts, nobody else; ORGANIZATION needs the organization's id.
#[test]
fn the_central_bus_admits_only_the_organization_or_the_listed_accounts() {
    let t = template();
    let r = &t["Resources"];
    for name in [
        "CentralEventBus",
        "CentralEventBusPolicy",
        "MemberEventsRule",
    ] {
        assert_eq!(r[name]["Condition"], "HasMembers", "{name}");
    }
    let p = &r["CentralEventBusPolicy"]["Properties"];
    assert_eq!(text(&p["EventBusName"]).trim(), "!Ref CentralEventBus");
    let choice = if_branches(&p["Statement"]).expect("Statement: !If");
    assert_eq!(choice[0], "BusAdmitsOrganization");
    let (org, listed) = (&choice[1], &choice[2]);
    for s in [org, listed] {
        assert_eq!(s["Effect"], "Allow");
        assert_eq!(s["Action"], "events:PutEvents");
        assert_eq!(text(&s["Resource"]).trim(), "!GetAtt CentralEventBus.Arn");
    }
    assert_eq!(org["Principal"], "*");
    assert_eq!(
        text(&org["Condition"]["StringEquals"]["aws:PrincipalOrgID"]).trim(),
        "!Ref OrganizationId"
    );
    assert!(listed.get("Condition").is_none());
    assert_eq!(
        text(&listed["Principal"]["AWS"]).trim().replace('\n', " "),
        "!Split - ',' - !Ref MemberAccounts"
    );
    let c = &t["Conditions"];
    assert!(text(&c["BusAdmitsOrganization"]).contains("OrganizationId"));
    let rule = &t["Rules"]["OrganizationMembersNeedTheOrganization"];
    assert!(text(rule).contains("ORGANIZATION") && text(rule).contains("OrganizationId"));
    let p = &t["Parameters"];
    let accounts = p["MemberAccounts"]["AllowedPattern"]
        .as_str()
        .expect("pattern");
    let accounts = regex::Regex::new(accounts).expect("regex");
    for ok in [
        "",
        "ORGANIZATION",
        "111111111111",
        "111111111111,222222222222",
    ] {
        assert!(accounts.is_match(ok), "{ok}");
    }
    for bad in [
        "1111",
        "organization",
        "111111111111,",
        "111111111111 222222222222",
    ] {
        assert!(!accounts.is_match(bad), "{bad}");
    }
}

/// The member template: a read role with ecs:List*/Describe* only, which
/// only the central stack's reconcile and ingest roles may assume (and, when
/// set, with the external id); a forwarding role that may only put events
/// on the central bus; both created in one Region per account.
#[test]
fn the_member_role_is_read_only_and_trusts_only_the_central_roles() {
    let m = load("deploy/member/template.yaml");
    let r = &m["Resources"];
    let role = &r["ReadRole"];
    assert_eq!(role["Condition"], "CreatesRoles");
    assert_eq!(r["ForwardRole"]["Condition"], "CreatesRoles");
    assert!(r["ForwardEcsEvents"].get("Condition").is_none());
    let trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        .as_sequence()
        .expect("trust");
    assert_eq!(trust.len(), 1);
    assert_eq!(trust[0]["Effect"], "Allow");
    assert_eq!(trust[0]["Action"], "sts:AssumeRole");
    assert_eq!(
        text(&trust[0]["Principal"]["AWS"]).trim(),
        "!Ref CentralRoleArns"
    );
    assert_eq!(
        trust[0]["Principal"].as_mapping().map(|p| p.len()),
        Some(1),
        "no other principal"
    );
    let cond = text(&trust[0]["Condition"]);
    assert!(cond.contains("HasExternalId") && cond.contains("sts:ExternalId"));
    let mut actions = Vec::new();
    for p in role["Properties"]["Policies"]
        .as_sequence()
        .expect("policies")
    {
        for s in p["PolicyDocument"]["Statement"]
            .as_sequence()
            .expect("statements")
        {
            assert_eq!(s["Effect"], "Allow");
            for a in s["Action"].as_sequence().expect("actions") {
                actions.push(a.as_str().expect("action").to_string());
            }
            if s["Sid"] == "DescribeEcs" {
                for res in s["Resource"].as_sequence().expect("resources") {
                    assert!(text(res).contains(":${AWS::AccountId}:"), "{res:?}");
                }
            }
        }
    }
    actions.sort();
    assert_eq!(
        actions,
        [
            "ecs:DescribeContainerInstances",
            "ecs:DescribeServices",
            "ecs:DescribeTasks",
            "ecs:ListClusters",
            "ecs:ListContainerInstances",
            "ecs:ListServices",
            "ecs:ListTasks",
        ]
    );
    // Every call the central stack makes through it is granted.
    let calls = actions_of_source();
    for call in &calls {
        assert!(actions.contains(call), "{call} is made but not granted");
    }
    let fwd = &r["ForwardRole"]["Properties"];
    assert_eq!(
        fwd["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"],
        "events.amazonaws.com"
    );
    let put = &fwd["Policies"][0]["PolicyDocument"]["Statement"];
    assert_eq!(put.as_sequence().map(Vec::len), Some(1));
    assert_eq!(put[0]["Action"], "events:PutEvents");
    assert_eq!(text(&put[0]["Resource"]).trim(), "!Ref CentralEventBusArn");
    // The central stack tells the members whom to trust and where to send.
    let t = template();
    let out = text(&t["Outputs"]["MemberTrustedRoleArns"]["Value"]);
    assert!(out.contains("ReconcileFunctionRole.Arn") && out.contains("IngestFunctionRole.Arn"));
    assert_eq!(
        text(&t["Outputs"]["CentralEventBusArn"]["Value"]).trim(),
        "!GetAtt CentralEventBus.Arn"
    );
    assert_eq!(
        m["Parameters"]["RoleName"]["Default"],
        t["Parameters"]["MemberRoleName"]["Default"]
    );
}

/// The ECS operations `EcsSource` makes (what a member's role must allow).
fn actions_of_source() -> Vec<String> {
    let src = std::fs::read_to_string(root().join("shared/src/ecs/aws.rs")).expect("aws.rs");
    let mut out = BTreeSet::new();
    for (call, action) in [
        (".list_clusters()", "ecs:ListClusters"),
        (".list_container_instances()", "ecs:ListContainerInstances"),
        (
            ".describe_container_instances()",
            "ecs:DescribeContainerInstances",
        ),
        (".list_tasks()", "ecs:ListTasks"),
        (".describe_tasks()", "ecs:DescribeTasks"),
        (".list_services()", "ecs:ListServices"),
        (".describe_services()", "ecs:DescribeServices"),
    ] {
        if src.contains(call) {
            out.insert(action.to_string());
        }
    }
    assert_eq!(out.len(), 7, "the calls of ecs/aws.rs moved: {out:?}");
    out.into_iter().collect()
}

/// Every metric-math alarm fills its inputs: an input with no datapoint in
/// a period (an outcome that did not happen) would otherwise void the
/// whole expression, and the alarm could never fire on what it watches.
#[test]
fn every_metric_math_input_is_filled() {
    let t = template();
    let mut expressions = 0;
    for (name, alarm) in resources_of(&t, "AWS::CloudWatch::Alarm") {
        let Some(metrics) = alarm["Properties"]["Metrics"].as_sequence() else {
            continue;
        };
        let inputs: Vec<&str> = (metrics.iter())
            .filter(|m| m.get("MetricStat").is_some())
            .filter_map(|m| m["Id"].as_str())
            .collect();
        for m in metrics {
            let Some(expr) = m["Expression"].as_str() else {
                continue;
            };
            expressions += 1;
            for id in &inputs {
                let uses = expr
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == *id);
                assert!(
                    !uses || expr.contains(&format!("FILL({id}, 0)")),
                    "{name}: {id} is not filled in {expr}"
                );
            }
        }
    }
    assert!(expressions >= 1, "the drift alarm is a metric-math alarm");
}

/// The reconcile budget's parameters: every value the template admits is
/// one the function's settings parser takes (bounds and default), and the
/// function's timeout leaves its pass time beyond the deadline margin.
#[test]
fn reconcile_budget_parameters_fit_the_function() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        store: css::config::StoreArgs,
    }
    let t = template();
    let rate = &t["Parameters"]["ReconcileCallsPerSecond"];
    for key in ["MinValue", "Default", "MaxValue"] {
        let v = rate[key].as_f64().unwrap_or_else(|| panic!("{key}"));
        let cli = Cli::try_parse_from(["css", "--reconcile-calls-per-second", &v.to_string()])
            .unwrap_or_else(|e| panic!("{key} {v}: {e}"));
        assert_eq!(cli.store.reconcile_calls_per_second, v);
    }
    for refused in ["0", "-1", "1001", "fast"] {
        assert!(Cli::try_parse_from(["css", "--reconcile-calls-per-second", refused]).is_err());
    }
    let horizon = &t["Parameters"]["ReconcileVerifyHorizon"];
    let pattern = horizon["AllowedPattern"].as_str().expect("pattern");
    assert_eq!(pattern, "^[0-9]+(s|m|h)$");
    let matches = |v: &str| {
        let (n, unit) = v.split_at(v.len().saturating_sub(1));
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && ["s", "m", "h"].contains(&unit)
    };
    let default = horizon["Default"].as_str().expect("default");
    for v in [default, "0s", "90s", "15m", "1h", "24h"] {
        assert!(matches(v), "{v}");
        let cli = Cli::try_parse_from(["css", "--reconcile-verify-horizon", v])
            .unwrap_or_else(|e| panic!("{v}: {e}"));
        if v == "0s" {
            assert!(cli.store.reconcile_verify_horizon.is_zero());
        }
    }
    let vars = &t["Resources"]["ReconcileFunction"]["Properties"]["Environment"]["Variables"];
    assert!(text(&vars["CSS_RECONCILE_CALLS_PER_SECOND"]).contains("ReconcileCallsPerSecond"));
    assert!(text(&vars["CSS_RECONCILE_VERIFY_HORIZON"]).contains("ReconcileVerifyHorizon"));
    let timeout = t["Resources"]["ReconcileFunction"]["Properties"]["Timeout"]
        .as_u64()
        .expect("timeout");
    assert!(
        std::time::Duration::from_secs(timeout) >= css::reconcile::DEADLINE_MARGIN * 5,
        "a {timeout} s function spends most of it past its pass's deadline"
    );
}

/// Store backups: the bucket is versioned, encrypted, private, TLS-only and
/// keeps `BackupRetentionDays`; only the reconcile function writes, only
/// under `etcd/`; the alarm fires at two intervals or when no backup was
/// ever recorded; the interval's every form parses as the function reads it.
#[test]
fn backups_are_versioned_private_kept_and_alarmed() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        store: css::config::StoreArgs,
    }
    let t = template();
    let b = &t["Resources"]["BackupBucket"];
    assert_eq!(b["DeletionPolicy"], "Retain");
    let p = &b["Properties"];
    assert_eq!(p["VersioningConfiguration"]["Status"], "Enabled");
    let sse = &p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
    assert_eq!(
        sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    for k in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(p["PublicAccessBlockConfiguration"][k], true, "{k}");
    }
    let rule = &p["LifecycleConfiguration"]["Rules"][0];
    assert!(text(&rule["ExpirationInDays"]).contains("BackupRetentionDays"));
    assert!(text(&rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        .contains("BackupRetentionDays"));
    let policy = text(&t["Resources"]["BackupBucketPolicy"]["Properties"]["PolicyDocument"]);
    assert!(
        policy.contains("aws:SecureTransport") && policy.contains("Deny"),
        "{policy}"
    );
    // Writers: the reconcile function alone, under etcd/.
    let writers: Vec<String> = functions(&t)
        .into_iter()
        .filter(|(_, f)| text(&f["Properties"]["Policies"]).contains("s3:PutObject"))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(writers, ["ReconcileFunction"]);
    let grant = grants(&t, "ReconcileFunction", "s3:PutObject");
    assert_eq!(grant.len(), 1);
    assert!(
        text(&grant[0]["Resource"]).contains("${BackupBucket.Arn}/etcd/*"),
        "{grant:?}"
    );
    let vars = &t["Resources"]["ReconcileFunction"]["Properties"]["Environment"]["Variables"];
    assert!(text(&vars["CSS_BACKUP_BUCKET"]).contains("BackupBucket"));
    assert!(text(&vars["CSS_BACKUP_INTERVAL"]).contains("BackupInterval"));
    let alarm = &t["Resources"]["BackupAgeAlarm"]["Properties"];
    assert_eq!(alarm["MetricName"], css::metrics::BACKUP_AGE_INTERVALS);
    assert_eq!(alarm["Threshold"].as_f64(), Some(2.0));
    assert_eq!(alarm["TreatMissingData"], "breaching");
    let interval = &t["Parameters"]["BackupInterval"];
    assert_eq!(interval["AllowedPattern"], "^[0-9]+(m|h)$");
    let default = interval["Default"].as_str().expect("default");
    for v in [default, "15m", "1h", "24h"] {
        let cli = Cli::try_parse_from(["css", "--backup-interval", v])
            .unwrap_or_else(|e| panic!("{v}: {e}"));
        assert!(
            cli.store.backup_interval >= std::time::Duration::from_secs(60),
            "{v}"
        );
    }
}
