"""Prepares a moto server whose request authentication turns on after this script's
requests (INITIAL_NO_AUTH_ACTION_COUNT=3): an IAM user allowed everything and its access
key; the test bucket is then made with that key. Prints the key id and the secret on one line.

    python moto_setup.py http://127.0.0.1:PORT BUCKET
"""

import json
import sys

import boto3

endpoint, bucket = sys.argv[1], sys.argv[2]
session = boto3.session.Session(
    aws_access_key_id="setup", aws_secret_access_key="setup", region_name="us-east-1"
)
iam = session.client("iam", endpoint_url=endpoint)
iam.create_user(UserName="label-gateway")
iam.put_user_policy(
    UserName="label-gateway",
    PolicyName="all",
    PolicyDocument=json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
    ),
)
key = iam.create_access_key(UserName="label-gateway")["AccessKey"]
# Signed with the new key: moto checks every request from here on.
boto3.session.Session(
    aws_access_key_id=key["AccessKeyId"],
    aws_secret_access_key=key["SecretAccessKey"],
    region_name="us-east-1",
).client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
print(key["AccessKeyId"], key["SecretAccessKey"])
