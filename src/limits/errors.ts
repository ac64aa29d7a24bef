// What a client hears when a tenant limit stops it: SQLSTATEs as PostgreSQL uses them, messages naming the limit.
import { ProxyError } from '../protocol/errors.js';

const CONFIGURATION_LIMIT_EXCEEDED = '53400';
const TOO_MANY_CONNECTIONS = '53300';
const QUERY_CANCELED = '57014';
const IDLE_IN_TRANSACTION_SESSION_TIMEOUT = '25P03';

const raise = (tenant: string, flag: string): string =>
  `raise it with \`pg-tenant-proxy tenants limits ${tenant} ${flag} N\`, or in limits.tiers / limits.default`;

export const LimitErrors = {
  tooManyClients(tenant: string, limit: number): ProxyError {
    return new ProxyError(
      TOO_MANY_CONNECTIONS,
      `too many connections for tenant "${tenant}": its limit is ${limit} (maxClients)`,
      'FATAL',
      undefined,
      raise(tenant, '--max-clients'),
    );
  },

  tooManyWaiting(tenant: string, limit: number): ProxyError {
    return new ProxyError(
      CONFIGURATION_LIMIT_EXCEEDED,
      `too many transactions of tenant "${tenant}" waiting: its limit is ${limit} (maxWaiting)`,
      'ERROR',
      undefined,
      raise(tenant, '--max-waiting'),
    );
  },

  overRate(tenant: string, rate: number): ProxyError {
    return new ProxyError(
      CONFIGURATION_LIMIT_EXCEEDED,
      `tenant "${tenant}" is over its budget of ${rate} transactions per second (transactionsPerSecond)`,
      'ERROR',
      undefined,
      raise(tenant, '--tx-per-second'),
    );
  },

  serverLimitTimeout(tenant: string, limit: number, ms: number): ProxyError {
    return new ProxyError(
      TOO_MANY_CONNECTIONS,
      `no server connection became available within ${ms} ms: tenant "${tenant}" holds its limit of ${limit} servers (maxServers)`,
      'ERROR',
      undefined,
      raise(tenant, '--max-servers'),
    );
  },

  /** PostgreSQL's own words for its statement_timeout, so drivers and applications treat it the same. */
  statementTimeout(): ProxyError {
    return new ProxyError(QUERY_CANCELED, 'canceling statement due to statement timeout');
  },

  /** PostgreSQL's own words for idle_in_transaction_session_timeout. */
  idleInTransactionTimeout(): ProxyError {
    return new ProxyError(
      IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
      'terminating connection due to idle-in-transaction timeout',
      'FATAL',
    );
  },

  /** A statement past its timeout with more of the client's statements pipelined behind it on the same server. */
  statementTimeoutPipelined(): ProxyError {
    return new ProxyError(
      QUERY_CANCELED,
      'terminating connection due to statement timeout',
      'FATAL',
      'statements were pipelined behind the one that timed out; cancelling could have hit one of them instead',
    );
  },
} as const;
