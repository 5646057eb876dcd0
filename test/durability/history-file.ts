import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { History } from '@temporalio/common/lib/proto-utils';
import * as proto from '@temporalio/proto';
import { patchProtobufRoot } from '@temporalio/proto/lib/patch-protobuf-root';
import { projectRoot } from '../../common/project-paths';

/** Folder of the recorded batchScoring histories; each file is `<workflow id>.json`. */
export const HISTORY_FOLDER = path.join(projectRoot(), 'test', 'histories');

interface ProtoJson {
  fromJson(type: unknown, json: unknown, options: { ignoreUnknownFields: boolean }): unknown;
}

/*
 * NOTE: Worker.runReplayHistory converts JSON itself with historyFromJSON, which throws "type must be a Type" in
 * this install. @temporalio/common 1.24.0 and @temporalio/proto each get their own copy of protobufjs 8, because the
 * hoisted copy is version 7 (for @grpc/proto-loader), and the converter checks the type against the wrong copy.
 * Converting with the copy that @temporalio/proto resolves, and passing the decoded History, avoids that path.
 */
const requireFromProto = createRequire(require.resolve('@temporalio/proto/package.json'));
const protoJson = requireFromProto('protobufjs/ext/protojson') as ProtoJson;
const historyType = (patchProtobufRoot(proto) as unknown as { lookupType(name: string): unknown }).lookupType('temporal.api.history.v1.History');

/** Returns the recorded history files, as `{ workflowId, file }`, sorted by name. */
export function recordedHistories(): Array<{ workflowId: string; file: string }> {
  return readdirSync(HISTORY_FOLDER)
    .filter((name) => name.endsWith('.json'))
    .sort()
    .map((name) => ({ workflowId: name.slice(0, -'.json'.length), file: path.join(HISTORY_FOLDER, name) }));
}

/** Reads a history in the JSON format `temporal workflow show --output json` writes. */
export function loadHistory(file: string): History {
  const json: unknown = JSON.parse(readFileSync(file, 'utf8'));
  return protoJson.fromJson(historyType, json, { ignoreUnknownFields: true }) as History;
}

/** Ids of the `patched()` markers recorded in a history, e.g. `durable-batch`. */
export function patchIds(file: string): string[] {
  const json = JSON.parse(readFileSync(file, 'utf8')) as {
    events: Array<{ markerRecordedEventAttributes?: { markerName?: string; details?: Record<string, { payloads?: Array<{ data?: string }> }> } }>;
  };
  return json.events.flatMap((event) => {
    const marker = event.markerRecordedEventAttributes;
    const data = marker?.markerName === 'core_patch' ? marker.details?.['patch-data']?.payloads?.[0]?.data : undefined;
    return data ? [(JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as { id: string }).id] : [];
  });
}
