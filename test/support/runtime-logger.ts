import { DefaultLogger, Runtime } from '@temporalio/worker';

// Keeps test output readable: the SDK logs every worker state change at INFO. TEST_LOG_LEVEL=DEBUG shows them.
Runtime.install({ logger: new DefaultLogger((process.env.TEST_LOG_LEVEL as 'WARN' | undefined) ?? 'WARN') });
