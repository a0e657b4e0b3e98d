//! The volume the read-side scenarios (rebuild, replay, reconcile) run over: whole
//! conversations recorded straight into the event store.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use cqrs_es::Aggregate;
use tenantry_domain::conversation::Conversation;
use tenantry_domain::TenantId;
use tenantry_eventstore::{append, EventStore, Expected, Metadata, NewEvent};
use uuid::Uuid;

use crate::http::Tenant;

/// The events of one whole conversation (start, four messages, end), as commands would have
/// recorded them (content left unsealed: the volume scenarios measure the read side).
fn conversation_events(tenant: &Tenant) -> anyhow::Result<Vec<NewEvent>> {
    use tenantry_domain::conversation::ConversationEvent as E;
    use tenantry_domain::{
        AgentType, Channel, ConversationId, MessageContent, MessageId, MessageRole, OrganizationId,
        Resolution,
    };
    let instance = tenantry_domain::AgentInstanceId::from_uuid(tenant.instance.parse()?);
    let mut events = vec![E::ConversationStarted {
        conversation_id: ConversationId::new(),
        agent_instance_id: instance,
        agent_type: AgentType::CustomerService,
        store_id: tenantry_domain::StoreId::from_uuid(tenant.store.parse()?),
        organization_id: OrganizationId::from_uuid(tenant.org.parse()?),
        customer_ref: None,
        channel: Channel::Web,
    }];
    for m in 0..4 {
        events.push(E::MessageAppended {
            message_id: MessageId::new(),
            agent_instance_id: instance,
            role: if m % 2 == 0 {
                MessageRole::Customer
            } else {
                MessageRole::Agent
            },
            content: MessageContent::parse("Where is my order? It was due last week.")?,
            tokens_in: 12,
            tokens_out: 30,
        });
    }
    events.push(E::ConversationEnded {
        agent_instance_id: instance,
        resolution: Resolution::Resolved,
        messages: 4,
        tokens_in: 48,
        tokens_out: 120,
    });
    Ok(events
        .iter()
        .map(|e| NewEvent::from_domain(e, 1))
        .collect::<Result<_, _>>()?)
}

/// Records `total` events of whole conversations straight into the event store, 8 writers,
/// 20 conversations per transaction; `heavy` of them go to the first tenant (the replay's).
pub(crate) async fn generate_volume(
    store: &EventStore,
    tenants: &[Tenant],
    total: u64,
    heavy: u64,
) -> anyhow::Result<()> {
    const PER_TX: u64 = 20;
    let transactions = total.div_ceil(6 * PER_TX);
    let heavy_transactions = heavy.div_ceil(6 * PER_TX);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, tenants, next) = (store.clone(), tenants.to_vec(), next.clone());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= transactions {
                    return anyhow::Ok(());
                }
                let tenant = if n < heavy_transactions {
                    &tenants[0]
                } else {
                    &tenants[1 + (n as usize % (tenants.len() - 1))]
                };
                let id = TenantId::from_uuid(tenant.org.parse()?);
                let mut tx = store.begin_writer(id).await?;
                for _ in 0..PER_TX {
                    append(
                        &mut tx,
                        id,
                        Conversation::TYPE,
                        Uuid::now_v7(),
                        Expected::NoStream,
                        conversation_events(tenant)?,
                        &Metadata {
                            actor: Some("system:bench".into()),
                            ..Metadata::default()
                        },
                    )
                    .await?;
                }
                tx.commit().await?;
                if (n + 1) % 1_000 == 0 {
                    eprintln!(
                        "  {} events recorded ({:.0} events/s)",
                        (n + 1) * 6 * PER_TX,
                        ((n + 1) * 6 * PER_TX) as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}
