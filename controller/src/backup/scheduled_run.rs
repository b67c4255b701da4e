//! Backup and drill are one kind of run used twice: each is a CronJob of
//! the backup, an on-demand annotation with its status record and queue,
//! and a label on its Jobs. `RunKind` says which; everything that differs
//! between the two is a method here, so the plan, the on-demand decision
//! and the reconciler are written once.

use k8s_openapi::api::batch::v1::{CronJob, Job};
use vertice_crds::backup_status::{
    QueuedRun, RunNowRecord, VerticeBackupStatus, DRILL_NOW_ANNOTATION, RUN_NOW_ANNOTATION,
};
use vertice_crds::VerticeBackup;

use super::names;

/// Which of a backup's two scheduled runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Backup,
    Drill,
}

impl RunKind {
    pub const ALL: [RunKind; 2] = [RunKind::Backup, RunKind::Drill];

    /// The kind of one of the backup's Jobs, by its run label.
    pub fn of(job: &Job) -> RunKind {
        let drill = job
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(names::RUN_LABEL))
            .is_some_and(|v| v == names::RUN_DRILL);
        if drill {
            RunKind::Drill
        } else {
            RunKind::Backup
        }
    }

    /// The word for one run in Events, and the agent's command.
    pub fn what(self) -> &'static str {
        match self {
            RunKind::Backup => "backup",
            RunKind::Drill => "drill",
        }
    }

    /// The name of this kind's CronJob of `backup`.
    pub fn cron_job_name(self, backup: &str) -> String {
        match self {
            RunKind::Backup => names::cron_job(backup),
            RunKind::Drill => names::drill_cron_job(backup),
        }
    }

    /// The annotation asking for a run now.
    pub fn now_annotation(self) -> &'static str {
        match self {
            RunKind::Backup => RUN_NOW_ANNOTATION,
            RunKind::Drill => DRILL_NOW_ANNOTATION,
        }
    }

    /// What an on-demand Job of this kind is called in errors.
    pub fn request(self) -> &'static str {
        match self {
            RunKind::Backup => "run-now",
            RunKind::Drill => "drill-now",
        }
    }

    /// The Event reason of an on-demand run started.
    pub fn started_reason(self) -> &'static str {
        match self {
            RunKind::Backup => "RunNowStarted",
            RunKind::Drill => "DrillNowStarted",
        }
    }

    /// The Event reason of an on-demand run queued.
    pub fn queued_reason(self) -> &'static str {
        match self {
            RunKind::Backup => "RunNowQueued",
            RunKind::Drill => "DrillNowQueued",
        }
    }

    /// What `waitingFor` says of a request held while the kind is suspended.
    pub fn resume(self) -> &'static str {
        match self {
            RunKind::Backup => "the backup to be resumed (spec.suspend)",
            RunKind::Drill => "the drills to be resumed (spec.suspend, spec.drill.suspend)",
        }
    }

    /// Whether this kind's runs are suspended: drills also by their own
    /// `spec.drill.suspend`.
    pub fn suspended(self, backup: &VerticeBackup) -> bool {
        let spec = &backup.spec;
        match self {
            RunKind::Backup => spec.suspend,
            RunKind::Drill => spec.suspend || spec.drill.as_ref().is_some_and(|d| d.suspend),
        }
    }

    /// The generation of this kind's CronJob as last applied.
    pub fn applied_generation(self, status: &VerticeBackupStatus) -> Option<i64> {
        match self {
            RunKind::Backup => status.cron_job_generation,
            RunKind::Drill => status.drill_cron_job_generation,
        }
    }

    pub fn set_applied_generation(self, status: &mut VerticeBackupStatus, generation: Option<i64>) {
        match self {
            RunKind::Backup => status.cron_job_generation = generation,
            RunKind::Drill => status.drill_cron_job_generation = generation,
        }
    }

    /// The last on-demand run started.
    pub fn record(self, status: &VerticeBackupStatus) -> Option<&RunNowRecord> {
        match self {
            RunKind::Backup => status.run_now.as_ref(),
            RunKind::Drill => status.drill_now.as_ref(),
        }
    }

    /// The status fields of this kind's on-demand runs: the last one
    /// started and the request waiting.
    pub fn slots(
        self,
        status: &mut VerticeBackupStatus,
    ) -> (&mut Option<RunNowRecord>, &mut Option<QueuedRun>) {
        match self {
            RunKind::Backup => (&mut status.run_now, &mut status.run_now_queued),
            RunKind::Drill => (&mut status.drill_now, &mut status.drill_now_queued),
        }
    }

    /// The request waiting for a run to end.
    pub fn queued(self, status: &VerticeBackupStatus) -> Option<&QueuedRun> {
        match self {
            RunKind::Backup => status.run_now_queued.as_ref(),
            RunKind::Drill => status.drill_now_queued.as_ref(),
        }
    }

    /// Puts back the on-demand fields as `stored` had them: nothing was
    /// started or queued.
    pub fn keep_on_demand(
        self,
        status: &mut VerticeBackupStatus,
        stored: Option<&VerticeBackupStatus>,
    ) {
        let record = stored.and_then(|s| self.record(s)).cloned();
        let queue = stored.and_then(|s| self.queued(s)).cloned();
        let (r, q) = self.slots(status);
        *r = record;
        *q = queue;
    }
}

/// One scheduled run of a backup as a reconcile should make it true.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledRun {
    pub kind: RunKind,
    pub cron_job_name: String,
    /// `None` when the spec is invalid or refused (and, for a drill, when
    /// `spec.drill` is not set). An invalid spec leaves the existing
    /// CronJob as it was, so a typo does not stop backups (it was written
    /// from a spec that passed every check then) — unless it now runs what
    /// is no longer allowed (`admission::check_existing`); a refusal
    /// deletes the CronJobs the backup owns (`children::revoked`).
    pub cron_job: Option<CronJob>,
    /// An on-demand Job to start (`vertice.io/run-now`, `vertice.io/drill-now`).
    pub run_now: Option<Job>,
}
