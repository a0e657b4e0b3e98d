//! Closing a month, shared by the admin route and the CLI: it reads the billing read model
//! and records each organization's invoice through a command, so it sits above both.
//! (Reconciling against the event log is read-side work: `tenantry_projections::reconcile`.)

use std::time::Duration;

use chrono::Utc;
use schemars::JsonSchema;
use serde::Serialize;
use tenantry_commands::{CommandBus, CommandError, Request};
use tenantry_domain::billing::Month;
use tenantry_domain::organization::OrganizationCommand;
use tenantry_domain::OrganizationId;
use tenantry_projections::billing::{self as billing_model, invoice_number};

use crate::ApiError;

/// What closing a month did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CloseReport {
    pub month: Month,
    pub finalized: usize,
    pub already_finalized: usize,
}

/// Finalizes every organization's invoice of `month` (a past month): an `InvoiceFinalized`
/// event with the number, lines and total. Invoices already finalized are left alone, so
/// running it twice changes nothing.
///
/// # Errors
/// 422 for a month that has not ended; 503 when the billing read model lags.
pub async fn close_month(
    commands: &CommandBus,
    month: Month,
    request: &Request,
) -> Result<CloseReport, ApiError> {
    if month.end() > Utc::now() {
        return Err(ApiError::Validation {
            field: "month".into(),
            message: format!("{month} has not ended yet"),
        });
    }
    let store = commands.event_store();
    if !billing_model::caught_up(store, Duration::from_secs(60)).await? {
        return Err(ApiError::Unavailable(
            "the billing read model is behind the event log; try again".into(),
        ));
    }
    let mut tx = store.begin_system().await?;
    let organizations = billing_model::billed_before(&mut tx, month.end()).await?;
    let mut report = CloseReport {
        month,
        finalized: 0,
        already_finalized: 0,
    };
    for (tenant, slug) in organizations {
        let draft = billing_model::draft(&mut tx, tenant, month).await?;
        let command = OrganizationCommand::FinalizeInvoice {
            month,
            number: invoice_number(&slug, month),
            lines: draft.lines,
            total: draft.total,
        };
        match commands
            .execute(OrganizationId::from_uuid(tenant), command, request)
            .await
        {
            Ok(_) => report.finalized += 1,
            Err(CommandError::Rejected {
                code: "invoice-finalized",
                ..
            }) => report.already_finalized += 1,
            Err(err) => return Err(err.into()),
        }
    }
    tx.commit().await?;
    Ok(report)
}
