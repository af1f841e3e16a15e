//! Custom::EtcdPlacement: the members' subnets must survive the loss of a
//! zone (one subnet per member, each in a zone of its own), and each
//! member's data volume must be created in its subnet's zone. CloudFormation
//! rules cannot count a list or compare its members' zones, so this check
//! runs as the etcd stack's first resource, before any member exists.

use serde::Deserialize;

use crate::CertError;

/// The resource's properties.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Properties {
    /// One subnet per member, in member order.
    pub subnet_ids: Vec<String>,
}

/// Each subnet's zone, in the order given, from what EC2 answered (`found`:
/// subnet id and zone); refuses a missing subnet, a repeated one, or two
/// members in one zone.
pub fn check(subnets: &[String], found: &[(String, String)]) -> Result<Vec<String>, CertError> {
    let refuse = |why: String| Err(CertError::Properties(format!("EtcdSubnetIds: {why}")));
    if subnets.is_empty() {
        return refuse("one subnet per member is needed, none given".into());
    }
    let mut zones: Vec<String> = Vec::new();
    for (i, subnet) in subnets.iter().enumerate() {
        let Some((_, zone)) = found.iter().find(|(id, _)| id == subnet) else {
            return refuse(format!("subnet {subnet} (member m{i}) does not exist"));
        };
        if let Some(j) = zones.iter().position(|z| z == zone) {
            return refuse(format!(
                "members m{j} ({}) and m{i} ({subnet}) are both in {zone}: {} members need {} subnets in {} distinct Availability Zones, or one zone's outage stops the store",
                subnets[j],
                subnets.len(),
                subnets.len(),
                subnets.len()
            ));
        }
        zones.push(zone.clone());
    }
    Ok(zones)
}

/// EC2's DescribeSubnets through its query API, signed with SigV4. The
/// generated EC2 SDK crate is the largest of all (minutes of compile time in
/// every CI build and `sam build`) for one call; the signer and XML decoder
/// are those the SDK itself uses.
pub struct Ec2 {
    pub http: reqwest::Client,
    /// Where EC2 answers: the SDK's endpoint override, else the region's.
    pub endpoint: String,
    pub region: String,
    pub credentials: aws_credential_types::provider::SharedCredentialsProvider,
}

impl Ec2 {
    pub fn new(sdk: &aws_config::SdkConfig, http: reqwest::Client) -> Result<Ec2, CertError> {
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| CertError::Placement("no AWS region".into()))?;
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(|| CertError::Placement("no AWS credentials provider".into()))?;
        let suffix = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        let endpoint = sdk
            .endpoint_url()
            .map(str::to_string)
            .unwrap_or_else(|| format!("https://ec2.{region}.{suffix}"));
        Ok(Ec2 {
            http,
            endpoint,
            region,
            credentials,
        })
    }

    /// (subnet id, zone) of each subnet EC2 knows.
    pub async fn describe_subnets(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, CertError> {
        use aws_credential_types::provider::ProvideCredentials;
        let fail = |what: String| CertError::Placement(what);
        let mut body = String::from("Action=DescribeSubnets&Version=2016-11-15");
        for (i, id) in ids.iter().enumerate() {
            body.push_str(&format!(
                "&SubnetId.{}={}",
                i + 1,
                percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let creds = (self.credentials.provide_credentials().await)
            .map_err(|e| fail(format!("no AWS credentials: {e}")))?;
        let url = format!("{}/", self.endpoint.trim_end_matches('/'));
        let signed = css_client::sign::sign_headers(
            "POST",
            &url,
            &[("content-type", content_type)],
            body.as_bytes(),
            &creds,
            &self.region,
            "ec2",
            std::time::SystemTime::now(),
        )
        .map_err(|e| fail(e.to_string()))?;
        let mut req = self.http.post(&url).header("content-type", content_type);
        for (k, v) in signed {
            req = req.header(k, v);
        }
        let res = (req.body(body).send().await).map_err(|e| fail(e.to_string()))?;
        let status = res.status();
        let text = res.text().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("EC2 answered {status}: {}", error_of(&text))));
        }
        subnets_of(&text).map_err(|e| fail(format!("EC2's answer: {e}")))
    }
}

/// (subnetId, availabilityZone) of each item of a DescribeSubnets answer.
fn subnets_of(xml: &str) -> Result<Vec<(String, String)>, aws_smithy_xml::decode::XmlDecodeError> {
    use aws_smithy_xml::decode::{try_data, Document};
    let mut doc = Document::new(xml);
    let mut root = doc.root_element()?;
    let mut out = Vec::new();
    while let Some(mut set) = root.next_tag() {
        if !set.start_el().matches("subnetSet") {
            continue;
        }
        while let Some(mut item) = set.next_tag() {
            let (mut id, mut zone) = (None, None);
            while let Some(mut field) = item.next_tag() {
                if field.start_el().matches("subnetId") {
                    id = Some(try_data(&mut field)?.to_string());
                } else if field.start_el().matches("availabilityZone") {
                    zone = Some(try_data(&mut field)?.to_string());
                }
            }
            if let (Some(id), Some(zone)) = (id, zone) {
                out.push((id, zone));
            }
        }
    }
    Ok(out)
}

/// The code and message of an EC2 error answer (else its start).
fn error_of(xml: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = xml.find(&open)? + open.len();
        let end = xml[start..].find("</")? + start;
        Some(xml[start..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        _ => xml.chars().take(200).collect(),
    }
}

/// Asks EC2 for the subnets' zones and checks them.
pub async fn zones(ec2: &Ec2, props: &Properties) -> Result<Vec<String>, CertError> {
    let found = ec2.describe_subnets(&props.subnet_ids).await?;
    check(&props.subnet_ids, &found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        (pairs.iter())
            .map(|(s, z)| (s.to_string(), z.to_string()))
            .collect()
    }

    fn subnets(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn describe_subnets_answers_are_read_item_by_item() {
        // EC2's shape: nested sets inside an item (tags, IPv6) must not be
        // taken for subnets.
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeSubnetsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r-1</requestId>
  <subnetSet>
    <item><subnetId>subnet-a</subnetId><availabilityZone>eu-west-1a</availabilityZone>
      <tagSet><item><key>Name</key><value>private-a</value></item></tagSet>
      <ipv6CidrBlockAssociationSet/></item>
    <item><tagSet/><availabilityZone>eu-west-1b</availabilityZone><subnetId>subnet-b</subnetId></item>
  </subnetSet>
</DescribeSubnetsResponse>"#;
        let got = subnets_of(xml).expect("parsed");
        assert_eq!(
            got,
            found(&[("subnet-a", "eu-west-1a"), ("subnet-b", "eu-west-1b")])
        );
        let err = "<Response><Errors><Error><Code>InvalidSubnetID.NotFound</Code><Message>The subnet ID 'subnet-x' does not exist</Message></Error></Errors></Response>";
        assert_eq!(
            error_of(err),
            "InvalidSubnetID.NotFound: The subnet ID 'subnet-x' does not exist"
        );
    }

    #[test]
    fn three_members_in_three_zones_answer_each_zone_in_order() {
        let f = found(&[("s-c", "z3"), ("s-a", "z1"), ("s-b", "z2")]);
        let zones = check(&subnets(&["s-a", "s-b", "s-c"]), &f).expect("placed");
        assert_eq!(zones, ["z1", "z2", "z3"]);
        assert_eq!(check(&subnets(&["s-b"]), &f).expect("one member"), ["z2"]);
    }

    #[test]
    fn a_shared_zone_a_repeated_or_unknown_subnet_is_refused() {
        let f = found(&[("s-a", "z1"), ("s-b", "z1"), ("s-c", "z3")]);
        for (ids, why) in [
            (
                &["s-a", "s-b", "s-c"][..],
                "m0 (s-a) and m1 (s-b) are both in z1",
            ),
            (
                &["s-a", "s-c", "s-a"][..],
                "m0 (s-a) and m2 (s-a) are both in z1",
            ),
            (
                &["s-a", "s-x", "s-c"][..],
                "subnet s-x (member m1) does not exist",
            ),
            (&[][..], "none given"),
        ] {
            let err = check(&subnets(ids), &f).expect_err("refused").to_string();
            assert!(err.contains(why), "{ids:?}: {err}");
            assert!(
                err.starts_with("invalid resource properties: EtcdSubnetIds:"),
                "{err}"
            );
        }
    }
}
