//! Conversation commands: each checks the conversation's agent instance, store and
//! organization as this server last read them (kept in memory until a change to them is
//! announced, see [`tenantry_eventstore::kept`]).

use std::sync::atomic::{AtomicBool, Ordering};

use cqrs_es::Aggregate;
use tenantry_domain::agent_instance::AgentInstance;
use tenantry_domain::context::{InstanceContext, StoreContext};
use tenantry_domain::conversation::{Conversation, ConversationAction, ConversationCommand};
use tenantry_domain::organization::Organization;
use tenantry_domain::store::Store;
use tenantry_domain::{AgentInstanceId, ConversationId, OrganizationId, TenantId};
use uuid::Uuid;

use tenantry_eventstore::kept::{KeepPolicy, Kept, KeptStreams};
use tenantry_eventstore::read::{read_streams, StreamRef};
use tenantry_eventstore::scope::Connect;
use tenantry_eventstore::vault::{self, Vault};
use tenantry_eventstore::RecordedEvent;

use crate::aggregate::{fold_opened, Staged};
use crate::folds::Folds;
use crate::{CommandBus, CommandError, Execute, Executed, Request};

/// The streams conversation commands decide from, for the server to keep in memory
/// ([`EventStore::keeping`](tenantry_eventstore::EventStore::keeping)): conversations,
/// guarded by their own appends, and their parents, whose moves the trigger of migration 0015
/// announces.
pub const KEPT: KeepPolicy = KeepPolicy {
    guarded: &[Conversation::TYPE],
    announced: &[Organization::TYPE, Store::TYPE, AgentInstance::TYPE],
};

impl Execute for ConversationAction {
    /// The organization and the conversation (for `Start`, the id inside the action).
    type Target = (OrganizationId, ConversationId);
    type Output = Executed<Conversation>;

    /// Runs the action on the conversation.
    ///
    /// The first attempt decides from the streams this server keeps in memory
    /// ([`tenantry_eventstore::kept`]) when it keeps them all, and reads nothing. A decision
    /// from a stale copy cannot stand: its append fails the stream's compare-and-set, and the
    /// next attempt reads; one that a copy refuses (or answers with another version than the
    /// request's `If-Match`) is decided again at once from what is stored.
    ///
    /// # Errors
    /// As [`CommandBus::transact`].
    #[tracing::instrument(skip_all, err(level = "debug"), fields(tenant_id = %target.0, conversation_id = %target.1))]
    async fn execute(
        self,
        bus: &CommandBus,
        target: Self::Target,
        request: &Request,
    ) -> Result<Executed<Conversation>, CommandError> {
        let (org, conversation_id) = target;
        let action = self;
        let tenant = TenantId::from(org);
        let (conversation_id, start_instance) = match &action {
            ConversationAction::Start {
                id,
                agent_instance_id,
                ..
            } => (*id, Some(*agent_instance_id)),
            _ => (conversation_id, None),
        };
        let c = conversation_id.as_uuid();
        let kept = bus.event_store().kept();
        let decision = Decision {
            org,
            conversation_id: c,
            start_instance,
            action: &action,
            request,
            vault: bus.event_store().vault(),
            folds: &bus.folds,
        };
        let decision = &decision;
        let from_memory = AtomicBool::new(kept.is_listening());
        let from_memory = &from_memory;
        let executed = bus
            .transact_grouped(
                tenant,
                request,
                crate::attempt!(
                    session | session | {
                        // The conversation and its parents; an agent instance and its store are
                        // named by the first event of the stream below them, and never change.
                        let wanted = match start_instance {
                            Some(instance) => [
                                StreamRef::Id(Conversation::TYPE, c),
                                StreamRef::Id(AgentInstance::TYPE, instance.as_uuid()),
                                StreamRef::NamedBy(
                                    Store::TYPE,
                                    AgentInstance::TYPE,
                                    instance.as_uuid(),
                                    "store_id",
                                ),
                                StreamRef::Id(Organization::TYPE, org.as_uuid()),
                            ],
                            None => [
                                StreamRef::Id(Conversation::TYPE, c),
                                StreamRef::NamedBy(
                                    AgentInstance::TYPE,
                                    Conversation::TYPE,
                                    c,
                                    "agent_instance_id",
                                ),
                                StreamRef::NamedBy(Store::TYPE, Conversation::TYPE, c, "store_id"),
                                StreamRef::Id(Organization::TYPE, org.as_uuid()),
                            ],
                        };
                        if from_memory.swap(false, Ordering::Relaxed) {
                            if let Some(streams) =
                                kept_streams(kept, tenant, &wanted, start_instance)
                            {
                                count_decision("memory");
                                match decision.decide(session, streams).await {
                                    Ok(staged) => return Ok(staged),
                                    Err(
                                        err @ (CommandError::Rejected { .. }
                                        | CommandError::PreconditionFailed { .. }),
                                    ) => {
                                        tracing::debug!(error = %err,
                                        "refused from memory; deciding from what is stored");
                                        kept.forget(tenant, Conversation::TYPE, c);
                                    }
                                    Err(err) => return Err(err),
                                }
                            }
                        }
                        // One round trip, kept for the next command.
                        count_decision("stored");
                        let epoch = kept.epoch();
                        let streams = kept.keep(
                            read_streams(session.connection().await?, tenant, &wanted).await?,
                            epoch,
                        );
                        let streams: [Kept; 4] = streams
                            .try_into()
                            .map_err(|_| CommandError::not_found("conversation"))?;
                        decision.decide(session, streams).await
                    }
                ),
            )
            .await;
        match &executed {
            // No command will follow an ended conversation's end; and a refused command
            // (most often one on an ended conversation) leaves nothing worth keeping.
            Ok(done) if done.aggregate.ended.is_none() => {}
            Ok(_) | Err(CommandError::Rejected { .. }) => {
                kept.forget(tenant, Conversation::TYPE, c);
            }
            Err(_) => {}
        }
        executed
    }
}

/// `tenantry_conversation_decisions_total{source}`: decisions made from the streams kept in
/// memory (`memory`) or from a read (`stored`); their ratio is the kept streams' hit rate.
fn count_decision(source: &'static str) {
    metrics::counter!("tenantry_conversation_decisions_total", "source" => source).increment(1);
}

/// The four streams a conversation command decides from, if this server keeps them all (a
/// conversation that `Start` begins need not be kept: it should not exist yet, and if it
/// does, the append says so).
fn kept_streams(
    kept: &KeptStreams,
    tenant: TenantId,
    wanted: &[StreamRef<'_>; 4],
    start_instance: Option<AgentInstanceId>,
) -> Option<[Kept; 4]> {
    let [conversation, instance, store, organization]: [Option<Kept>; 4] =
        kept.get(tenant, wanted).try_into().ok()?;
    let conversation = match (conversation, start_instance) {
        (Some(conversation), _) => conversation,
        (None, Some(_)) => Kept::from([]),
        (None, None) => return None,
    };
    Some([conversation, instance?, store?, organization?])
}

/// What a conversation command decides, apart from the streams it decides from.
struct Decision<'a> {
    org: OrganizationId,
    conversation_id: Uuid,
    start_instance: Option<AgentInstanceId>,
    action: &'a ConversationAction,
    request: &'a Request,
    vault: &'a Vault,
    folds: &'a Folds,
}

impl Decision<'_> {
    /// Decides from the conversation, its agent instance, store and organization, and stages
    /// the append (`conn` serves only the vault, when it does not keep the key that opens the
    /// customer reference, or seals a new one).
    async fn decide(
        &self,
        conn: &mut impl Connect,
        [conversation, instance, store, organization]: [Kept; 4],
    ) -> Result<Staged<Conversation>, CommandError> {
        let Decision {
            org,
            conversation_id: c,
            start_instance,
            action,
            request,
            vault,
            folds,
        } = *self;
        let tenant = TenantId::from(org);
        // The customer reference is shown in the command's answer: open it (only the first
        // event, on a copy; the aggregate keeps no message content). The customer's key is
        // taken from the sealed reference first.
        let subject = vault::subject_of(conversation.iter().map(|e| &**e));
        let mut opened = None;
        if let Some(first) = conversation.first() {
            if vault::holds_sealed(&first.event_type, &first.payload) {
                let mut first = RecordedEvent::clone(first);
                vault.reveal(conn, std::slice::from_mut(&mut first)).await?;
                opened = Some(first);
            }
        }
        let conversation =
            fold_opened::<Conversation>(c, &conversation, opened.as_ref(), subject)?.sealing(vault);
        conversation.check_expected(request)?;
        let instance_id = match start_instance {
            Some(id) => id,
            None if conversation.state.organization_id == Some(org) => conversation
                .state
                .agent_instance_id
                .ok_or_else(|| CommandError::not_found("conversation"))?,
            None => return Err(CommandError::not_found("conversation")),
        };
        let instance = folds.fold::<AgentInstance>(tenant, instance_id.as_uuid(), &instance)?;
        if instance.organization_id != Some(org) {
            return Err(CommandError::not_found("agent instance"));
        }
        let store_id = instance
            .store_id
            .ok_or_else(|| CommandError::not_found("agent instance"))?;
        // Named by the instance (Start) or the conversation, which records the instance's
        // store: the same stream as `store_id`.
        let store = folds.fold::<Store>(tenant, store_id.as_uuid(), &store)?;
        let organization = folds.fold::<Organization>(tenant, org.as_uuid(), &organization)?;
        let ctx = organization
            .context()
            .map_err(|e| CommandError::rejected(&e))?;
        // The conversation records what its parents are, as the store says.
        let command = ConversationCommand {
            org: ctx,
            store: StoreContext {
                active: store.active,
            },
            instance: InstanceContext {
                status: instance.status,
                agent_type: instance
                    .agent_type
                    .ok_or_else(|| CommandError::not_found("agent instance"))?,
                store_id,
            },
            action: action.clone(),
        };
        conversation
            .stage(conn, tenant, command, &request.metadata)
            .await
    }
}
