//! Who is asking, and what they may see: the one place tenant scope is decided.

use crate::{CustomerId, ExtensionId, LoginId, ResellerId, StoreError, TokenId};

/// The part of the platform a caller can see. Every query filters by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The platform operator: everything.
    Operator,
    /// One reseller and all its customers.
    Reseller { reseller: ResellerId },
    /// One customer (tenant).
    Customer {
        reseller: ResellerId,
        customer: CustomerId,
    },
    /// One user of a customer: their own extension and its devices.
    Extension {
        reseller: ResellerId,
        customer: CustomerId,
        extension: ExtensionId,
    },
}

impl Scope {
    /// The reseller the scope is confined to, if any (bound as a nullable filter).
    pub fn reseller(&self) -> Option<ResellerId> {
        match *self {
            Scope::Operator => None,
            Scope::Reseller { reseller }
            | Scope::Customer { reseller, .. }
            | Scope::Extension { reseller, .. } => Some(reseller),
        }
    }

    /// The customer the scope is confined to, if any.
    pub fn customer(&self) -> Option<CustomerId> {
        match *self {
            Scope::Operator | Scope::Reseller { .. } => None,
            Scope::Customer { customer, .. } | Scope::Extension { customer, .. } => Some(customer),
        }
    }

    /// The extension the scope is confined to, if any.
    pub fn extension(&self) -> Option<ExtensionId> {
        match *self {
            Scope::Extension { extension, .. } => Some(extension),
            _ => None,
        }
    }

    pub(crate) fn reseller_param(&self) -> Option<i64> {
        self.reseller().map(|r| r.0)
    }
    pub(crate) fn customer_param(&self) -> Option<i64> {
        self.customer().map(|c| c.0)
    }
    pub(crate) fn extension_param(&self) -> Option<i64> {
        self.extension().map(|e| e.0)
    }

    fn rank(&self) -> u8 {
        match self {
            Scope::Operator => 3,
            Scope::Reseller { .. } => 2,
            Scope::Customer { .. } => 1,
            Scope::Extension { .. } => 0,
        }
    }
}

/// The level an operation needs at least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Operator,
    Reseller,
    Customer,
}

/// Who made a change, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Login {
        id: LoginId,
        email: String,
    },
    Token {
        id: TokenId,
        public_id: String,
    },
    /// A shell command of the hosting operator (`pbx admin …`).
    Cli,
    /// The platform itself (demo seeding, automatic jobs).
    System,
}

impl Actor {
    pub fn label(&self) -> String {
        match self {
            Actor::Login { email, .. } => format!("login:{email}"),
            Actor::Token { public_id, .. } => format!("token:{public_id}"),
            Actor::Cli => "cli".to_owned(),
            Actor::System => "system".to_owned(),
        }
    }
}

/// An authenticated caller: what it may see, who it is, whether it may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub scope: Scope,
    pub actor: Actor,
    pub read_only: bool,
}

impl Principal {
    pub fn new(scope: Scope, actor: Actor) -> Self {
        Principal {
            scope,
            actor,
            read_only: false,
        }
    }

    /// The hosting operator at the shell: full scope.
    pub fn cli() -> Self {
        Principal::new(Scope::Operator, Actor::Cli)
    }

    /// The platform acting on its own behalf.
    pub fn system() -> Self {
        Principal::new(Scope::Operator, Actor::System)
    }

    /// Refuses writes by read-only callers and by callers below `level`.
    pub(crate) fn may_write(&self, level: Level) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::Forbidden("this credential is read-only"));
        }
        let needed = match level {
            Level::Operator => 3,
            Level::Reseller => 2,
            Level::Customer => 1,
        };
        if self.scope.rank() < needed {
            return Err(StoreError::Forbidden(
                "this needs an administrator's rights",
            ));
        }
        Ok(())
    }

    /// Refuses reads by callers below `level` (for example, a customer user
    /// listing all the customer's extensions).
    pub(crate) fn may_read(&self, level: Level) -> Result<(), StoreError> {
        let needed = match level {
            Level::Operator => 3,
            Level::Reseller => 2,
            Level::Customer => 1,
        };
        if self.scope.rank() < needed {
            return Err(StoreError::Forbidden(
                "this needs an administrator's rights",
            ));
        }
        Ok(())
    }
}
