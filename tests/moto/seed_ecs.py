"""Builds an ECS fleet in moto's server mode through its real API (boto3).

usage: seed_ecs.py ENDPOINT SPEC_JSON
SPEC_JSON: {"clusters": {"name": {"instances": 2, "running": 5, "stopped": 1,
                                  "services": ["api"]}},
            "delete": ["name", ...],
            "account": "111111111111", "region": "eu-west-1"}
account (default moto's own, 123456789012): resources are made in that account,
with credentials from sts.assume_role into it, as moto keeps them per account.
Prints {"clusters": {name: {"arn", "instances": [arn], "running": [arn], "stopped": [arn]}}}.
"""
import json
import sys
import urllib.request

import boto3

endpoint, spec = sys.argv[1], json.loads(sys.argv[2])
region = spec.get("region", "us-east-1")
account = spec.get("account", "123456789012")
kw = dict(endpoint_url=endpoint, region_name=region,
          aws_access_key_id="testing", aws_secret_access_key="testing")
if account != "123456789012":
    creds = boto3.client("sts", **kw).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/seed", RoleSessionName="seed")["Credentials"]
    kw.update(aws_access_key_id=creds["AccessKeyId"],
              aws_secret_access_key=creds["SecretAccessKey"],
              aws_session_token=creds["SessionToken"])
ecs = boto3.client("ecs", **kw)
ec2 = boto3.client("ec2", **kw)

# Task status must not advance on every describe.
req = urllib.request.Request(
    endpoint + "/moto-api/state-manager/set-transition",
    data=json.dumps({"model_name": "ecs::task",
                     "transition": {"progression": "manual", "times": 1000000}}).encode(),
    method="POST")
urllib.request.urlopen(req).read()

out = {}
image = None
for name, want in spec.get("clusters", {}).items():
    arn = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    got = {"arn": arn, "instances": [], "running": [], "stopped": []}
    # Tasks run on container instances (moto's Fargate path is incomplete).
    n_instances = want.get("instances", 0)
    if want.get("running", 0) + want.get("stopped", 0) > 0:
        n_instances = max(n_instances, 1)
    for _ in range(n_instances):
        if image is None:
            image = ec2.describe_images()["Images"][0]["ImageId"]
        iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        doc = json.dumps({"instanceId": iid, "region": region, "accountId": account})
        ci = ecs.register_container_instance(cluster=name, instanceIdentityDocument=doc)
        got["instances"].append(ci["containerInstance"]["containerInstanceArn"])
    ecs.register_task_definition(
        family="web", networkMode="bridge",
        containerDefinitions=[{"name": "web", "image": "nginx:1.27", "cpu": 1, "memory": 4}])
    total = want.get("running", 0) + want.get("stopped", 0)
    arns = []
    while len(arns) < total:
        n = min(10, total - len(arns))
        r = ecs.run_task(cluster=name, taskDefinition="web", count=n, launchType="EC2",
                         startedBy="seed", group="service:web")
        arns.extend(t["taskArn"] for t in r["tasks"])
    for t in arns[want.get("running", 0):]:
        ecs.stop_task(cluster=name, task=t, reason="seed")
    got["services"] = []
    for svc in want.get("services", []):
        s = ecs.create_service(cluster=name, serviceName=svc, taskDefinition="web", desiredCount=0)
        got["services"].append(s["service"]["serviceArn"])
    got["running"] = arns[:want.get("running", 0)]
    got["stopped"] = arns[want.get("running", 0):]
    out[name] = got
for name in spec.get("delete", []):
    for t in ecs.list_tasks(cluster=name)["taskArns"]:
        ecs.stop_task(cluster=name, task=t, reason="cleanup")
    for ci in ecs.list_container_instances(cluster=name)["containerInstanceArns"]:
        ecs.deregister_container_instance(cluster=name, containerInstance=ci, force=True)
    ecs.delete_cluster(cluster=name)
print(json.dumps({"clusters": out}))
