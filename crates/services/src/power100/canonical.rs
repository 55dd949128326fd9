//! The stored form of a profile: the canonical JSON of its validated domain value (slugs for
//! vocabulary, labels for service areas, `null` for absent optional values), and the way back
//! to raw input, so a stored profile is parsed again with the catalogue in force.

use std::collections::BTreeMap;

use flywheel_power100::profile::{Contact, ContactInput, PartnerContactsInput};
use flywheel_power100::{
    ContractorProfile, ContractorProfileInput, PartnerProfile, PartnerProfileInput, ServiceArea,
};
use serde_json::{json, Map, Value};

pub(crate) fn contractor_json(profile: &ContractorProfile) -> Value {
    json!({
        "id": profile.id.as_str(),
        "company_name": profile.company_name.as_str(),
        "contact": contact_json(&profile.contact),
        "service_areas": areas_json(&profile.service_areas),
        "focus_areas": profile.focus_areas.as_slice().iter().map(|area| area.as_str()).collect::<Vec<_>>(),
        "revenue_tier": profile.revenue_tier.as_ref().map(|tier| tier.as_str()),
        "team_size": profile.team_size,
        "tech_stack": profile.tech_stack.iter().map(|(category, tools)| {
            (category.clone(), Value::from(tools.iter().map(|tool| tool.as_str()).collect::<Vec<_>>()))
        }).collect::<Map<_, _>>(),
        "readiness_indicators": profile.readiness_indicators.iter().map(|(key, value)| {
            (key.clone(), Value::Bool(*value))
        }).collect::<Map<_, _>>(),
        "business_goals": profile.business_goals.as_ref().map(|text| text.as_str()),
        "challenges": profile.challenges.as_ref().map(|text| text.as_str()),
    })
}

pub(crate) fn partner_json(profile: &PartnerProfile) -> Value {
    json!({
        "id": profile.id.as_str(),
        "company_name": profile.company_name.as_str(),
        "description": profile.description.as_ref().map(|text| text.as_str()),
        "value_proposition": profile.value_proposition.as_ref().map(|text| text.as_str()),
        "key_differentiators": profile.key_differentiators.iter().map(|text| text.as_str()).collect::<Vec<_>>(),
        "focus_areas_served": profile.focus_areas_served.iter().map(|area| area.as_str()).collect::<Vec<_>>(),
        "revenue_tiers_served": profile.revenue_tiers_served.iter().map(|tier| tier.as_str()).collect::<Vec<_>>(),
        "service_areas": areas_json(&profile.service_areas),
        "contacts": {
            "ceo": profile.contacts.ceo.as_ref().map(contact_json),
            "customer_experience": profile.contacts.customer_experience.as_ref().map(contact_json),
            "sales": profile.contacts.sales.as_ref().map(contact_json),
        },
        "engagement_tier": profile.engagement_tier,
        "active": profile.active,
    })
}

fn contact_json(contact: &Contact) -> Value {
    json!({
        "name": contact.name.as_str(),
        "email": contact.email.as_ref().map(|email| email.as_str()),
        "phone": contact.phone.as_ref().map(|phone| phone.as_str()),
    })
}

fn areas_json(areas: &[ServiceArea]) -> Vec<String> {
    areas.iter().map(ServiceArea::label).collect()
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn texts(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn contact_input(value: Option<&Value>) -> Option<ContactInput> {
    let value = value.filter(|value| value.is_object())?;
    Some(ContactInput {
        name: text(value, "name").unwrap_or_default(),
        email: text(value, "email"),
        phone: text(value, "phone"),
    })
}

/// Raw input from a stored contractor profile (to be parsed again with the catalogue).
pub(crate) fn contractor_input(value: &Value) -> ContractorProfileInput {
    ContractorProfileInput {
        id: text(value, "id").unwrap_or_default(),
        company_name: text(value, "company_name").unwrap_or_default(),
        contact: contact_input(value.get("contact")).unwrap_or_default(),
        service_areas: texts(value, "service_areas"),
        focus_areas: texts(value, "focus_areas"),
        revenue_tier: text(value, "revenue_tier"),
        team_size: value.get("team_size").and_then(Value::as_i64),
        tech_stack: value
            .get("tech_stack")
            .and_then(Value::as_object)
            .map(|map| {
                map.keys()
                    .map(|category| (category.clone(), texts(&value["tech_stack"], category)))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default(),
        readiness_indicators: value
            .get("readiness_indicators")
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .filter_map(|(key, flag)| flag.as_bool().map(|flag| (key.clone(), flag)))
                    .collect()
            })
            .unwrap_or_default(),
        business_goals: text(value, "business_goals"),
        challenges: text(value, "challenges"),
    }
}

/// Raw input from a stored partner profile.
pub(crate) fn partner_input(value: &Value) -> PartnerProfileInput {
    let contacts = value.get("contacts");
    PartnerProfileInput {
        id: text(value, "id").unwrap_or_default(),
        company_name: text(value, "company_name").unwrap_or_default(),
        description: text(value, "description"),
        value_proposition: text(value, "value_proposition"),
        key_differentiators: texts(value, "key_differentiators"),
        focus_areas_served: texts(value, "focus_areas_served"),
        revenue_tiers_served: texts(value, "revenue_tiers_served"),
        service_areas: texts(value, "service_areas"),
        contacts: PartnerContactsInput {
            ceo: contact_input(contacts.and_then(|c| c.get("ceo"))),
            customer_experience: contact_input(contacts.and_then(|c| c.get("customer_experience"))),
            sales: contact_input(contacts.and_then(|c| c.get("sales"))),
        },
        engagement_tier: text(value, "engagement_tier"),
        active: value
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flywheel_power100::Power100Catalogue;

    #[test]
    fn stored_profiles_parse_back_to_the_same_value() {
        let catalogue = Power100Catalogue::default();
        let contractor = ContractorProfile::parse(
            &ContractorProfileInput {
                id: "c-1".into(),
                company_name: "Acme Roofing".into(),
                contact: ContactInput {
                    name: "Ann".into(),
                    email: Some("ann@acme.test".into()),
                    phone: None,
                },
                service_areas: vec!["TX".into(), "midwest".into()],
                focus_areas: vec!["controlling_lead_flow".into()],
                revenue_tier: Some("5_10_million".into()),
                team_size: Some(12),
                tech_stack: BTreeMap::from([("crm".into(), vec!["HubSpot".into()])]),
                readiness_indicators: BTreeMap::from([("has_budget".into(), true)]),
                business_goals: Some("grow".into()),
                challenges: None,
            },
            &catalogue,
        )
        .unwrap();
        let stored = contractor_json(&contractor);
        let again = ContractorProfile::parse(&contractor_input(&stored), &catalogue).unwrap();
        assert_eq!(again, contractor);

        let partner = PartnerProfile::parse(
            &PartnerProfileInput {
                id: "p-1".into(),
                company_name: "LeadCo".into(),
                value_proposition: Some("More leads".into()),
                key_differentiators: vec!["Fast".into()],
                focus_areas_served: vec!["controlling_lead_flow".into()],
                revenue_tiers_served: vec!["5_10_million".into()],
                service_areas: vec!["national".into()],
                contacts: PartnerContactsInput {
                    ceo: Some(ContactInput {
                        name: "Bo".into(),
                        email: None,
                        phone: Some("555".into()),
                    }),
                    ..PartnerContactsInput::default()
                },
                active: true,
                ..PartnerProfileInput::default()
            },
            &catalogue,
        )
        .unwrap();
        let stored = partner_json(&partner);
        let again = PartnerProfile::parse(&partner_input(&stored), &catalogue).unwrap();
        assert_eq!(again, partner);
    }
}
