// Types of Ping's SDK for web pages (static/ping.js), written by hand.
// Results keep the worker's snake_case keys; ids are lowercase hex strings;
// times are ms since 1970; bytes are Uint8Array.
// Checked: `tsc --noEmit` against static/example.mjs (tests/browser/test_types.py),
// and RpcMethod against the Python handlers' declared names.

/** Every RPC method name (the one table: the Python handlers declare them). */
export type RpcMethod =
  | "ping"
  | "info"
  | "account.status"
  | "account.create"
  | "account.whoami"
  | "account.settings"
  | "account.profiles"
  | "account.devices"
  | "directory.labels"
  | "device.revoke"
  | "device.key_package"
  | "device.admit_to_chats"
  | "conversation.list"
  | "conversation.create"
  | "conversation.invite"
  | "conversation.rename"
  | "conversation.remove_user"
  | "conversation.add_members"
  | "conversation.remove_members"
  | "conversation.members"
  | "conversation.messages"
  | "conversation.send"
  | "conversation.export_secret"
  | "conversation.export_snapshot"
  | "conversation.import_snapshot"
  | "conversation.join"
  | "conversation.process_envelope"
  | "conversation.commit_proposals"
  | "invitation.list"
  | "invitation.accept"
  | "invitation.decline"
  | "message.pending"
  | "message.ack"
  | "sync.run"
  | "link.request"
  | "link.finish"
  | "link.cancel"
  | "link.grant"
  | "link.admit"
  | "live.start"
  | "live.focus"
  | "live.stop"
  | "sw.cold_sync"
  | "vault.status"
  | "vault.set_passphrase"
  | "vault.unlock"
  | "vault.lock"
  | "push.status"
  | "push.subscribe"
  | "push.unsubscribe"
  | "push.vapid_key";

export declare class PingError extends Error {
  constructor(init: {
    name?: string;
    message: string;
    status?: number | null;
    code?: string | null;
    reason?: string | null;
    peer_fault?: boolean | null;
  });
  /** The Python exception class: "InvalidInput", "TransportError", "StorageError", ... */
  name: string;
  status: number | null;
  code: string | null;
  /** For an MLS refusal: the ping_core.errors.MlsReason value ("bad_signature", "wrong_state", ...). */
  reason: string | null;
  /** For an MLS refusal: true when a peer's message was bad, false when the call was. */
  peerFault: boolean | null;
}

export type AckMode = "auto" | "manual";
export type NotifyMode = "text" | "generic" | "off";

export interface OpenOptions {
  /** The Ping server's origin (default: this page's; another origin needs CORS and the CSP's connect-src). */
  server?: string | null;
  /** The local profile name (default "default"): one account each. */
  account?: string;
  onProgress?: ((stage: BootStage, info: BootInfo) => void) | null;
  ack?: AckMode | null;
  dev?: boolean;
  workerUrl?: string | URL;
}

export type BootStage = "starting worker" | "loading runtime" | "installing packages" | "starting" | "ready" | "failed";

export interface BootInfo {
  type: "boot";
  stage: BootStage;
  worker_id?: string;
  ms?: number;
  python?: string;
  crypto?: string;
  error?: { name: string; message: string };
  [key: string]: unknown;
}

export interface WorkerInfo {
  python: string;
  platform: string;
  crypto: string;
  crypto_backends: string[];
  crypto_selection: Record<string, unknown> | null;
  methods: string[];
}

export interface Pong {
  pong: true;
  echo: Record<string, unknown>;
  python: string;
}

export interface WhoAmI {
  user_id: string;
  device_id: string;
  label: string;
  registered: boolean;
}

export type AccountStatus =
  | ({ state: "ready" } & WhoAmI)
  | { state: "linking"; request: string; device_id: string; label: string }
  | { state: "none" };

export interface Settings {
  auto_join: boolean;
  notify: NotifyMode;
  ack: AckMode;
}

export interface Profiles {
  /** This Ping's profile. */
  profile: string;
  /** Every profile of the origin with an account: name -> user id. */
  profiles: Record<string, string>;
}

export interface Device {
  device_id: string;
  label: string;
  created_at: number;
  this: boolean;
}

export interface Message {
  conv: string;
  /** The server's log position: (conv, seq) identifies a message. */
  seq: number;
  user: string;
  device: string;
  /** The exact payload. */
  bytes: Uint8Array;
  /** The payload as text when it is valid UTF-8, else null. */
  text: string | null;
  time: number;
  epoch: number;
}

export interface Conversation {
  id: string;
  /** null: an unnamed conversation. */
  name: string | null;
  epoch: number;
  member_count: number;
  created_at: number;
  last: Message | null;
  /** The server refused this device (it was removed). */
  removed: boolean;
}

export interface Member {
  /** null: the leaf proves no account. */
  user_id: string | null;
  device_id: string;
  leaf: number;
  label: string | null;
  me: boolean;
}

export interface Invitation {
  conv: string;
  name: string | null;
  inviter: string | null;
  inviter_device: string;
  members: number;
  received_ms: number;
}

export interface SyncResult {
  messages: Message[];
  conversations: string[];
}

export interface AdmitOutcome {
  conv: string;
  status: "Admitted" | "Skipped" | "Failed";
  detail: string | null;
}

export interface LinkRequest {
  code: string;
  device_id: string;
}

export interface LinkGrant {
  grant: string;
  device_id: string;
}

export interface LinkAdmitted {
  device_id: string;
  admitted: number;
  failed: { conv: string; error: string }[];
}

export interface Problem {
  conv: string;
  kind: string;
  seq: number | null;
  sender_device: string | null;
  detail: string;
}

export interface ColdSyncAccount {
  profile: string;
  account: string;
  messages: number;
  notify: NotifyMode;
  error: string | null;
}

export interface ColdSyncResult {
  account: string | null;
  accounts: ColdSyncAccount[];
  messages: number;
  new: (Message & { account: string; profile: string })[];
  conversations: string[];
  notify: NotifyMode;
  ms: number;
  [key: string]: unknown;
}

interface EventBase {
  /** The local profile the event belongs to. */
  profile?: string;
  /** The worker that made it. */
  origin?: string;
}

export interface PingEventMap {
  messages: EventBase & { type: "messages"; conv: string; messages: Message[] };
  conversations: EventBase & { type: "conversations"; changed: string[] };
  status: EventBase & { type: "status"; online: boolean; error: string | null };
  account: EventBase & { type: "account"; state: string };
  invitations: EventBase & { type: "invitations"; pending: Invitation[] };
  invitation: EventBase & { type: "invitation"; invitation: Invitation };
  problems: EventBase & { type: "problems"; problems: Problem[] };
  revoked: EventBase & { type: "revoked"; message: string };
  "fork-healed": EventBase & { type: "fork-healed"; conv: string };
}
export type PingEvent = PingEventMap[keyof PingEventMap];

/** The profile's account database at rest (vault.*, pyodide_app/vault.py), in this context. */
export interface VaultStatus {
  /** Its records are sealed (AES-GCM under the database's key). */
  sealed: boolean;
  /** Its key is wrapped under a passphrase. */
  passphrase: boolean;
  /** This context does not hold the key: unlock(passphrase) first. */
  locked: boolean;
}
export interface PushStatus {
  /** This device's push subscriptions at the server (push.*, pyodide_app/push.py). */
  subscriptions: { endpoint: string; created_ms: number }[];
}

export declare class Ping {
  static open(options?: OpenOptions): Promise<Ping>;
  static start(options?: {
    workerUrl?: string | URL;
    dev?: boolean;
    onBoot?: ((stage: BootStage, info: BootInfo) => void) | null;
    account?: string;
  }): Ping;
  static registerServiceWorker(url?: string | URL): Promise<ServiceWorkerRegistration | null>;
  static swSync(options?: { timeoutMs?: number }): Promise<ColdSyncResult>;

  readonly profile: string;
  readonly ready: Promise<BootInfo>;
  call(method: RpcMethod | string, params?: Record<string, unknown>): Promise<any>;
  on<K extends keyof PingEventMap>(type: K, fn: (event: PingEventMap[K]) => void): () => boolean;
  on(type: "*", fn: (event: PingEvent) => void): () => boolean;
  terminate(): void;

  ping(echo?: Record<string, unknown>): Promise<Pong>;
  info(): Promise<WorkerInfo>;

  status(): Promise<AccountStatus>;
  createAccount(label: string): Promise<WhoAmI & { error: string | null }>;
  whoami(): Promise<WhoAmI>;
  settings(change?: { autoJoin?: boolean; notify?: NotifyMode; ack?: AckMode }): Promise<Settings>;
  profiles(): Promise<Profiles>;
  devices(): Promise<Device[]>;
  labels(userIds: string[]): Promise<Record<string, { label: string; user_id: string }>>;
  revoke(deviceId: string): Promise<{ removed_from: number }>;
  freshKeyPackage(options?: { lastResort?: boolean }): Promise<Uint8Array>;
  admitDeviceToChats(
    deviceId: string,
    chats: { conv: string; keyPackage: Uint8Array }[],
  ): Promise<{ outcomes: AdmitOutcome[] }>;

  conversations(): Promise<Conversation[]>;
  createConversation(name?: string | null): Promise<Conversation>;
  invite(conv: string, userId: string): Promise<{ added: number }>;
  rename(conv: string, name: string): Promise<Conversation>;
  removeUser(conv: string, userId: string): Promise<{ removed: number }>;
  addMembers(
    conv: string,
    members: { deviceId: string; keyPackage: Uint8Array }[],
    options?: { userId?: string | null },
  ): Promise<{ added: number }>;
  removeMembers(conv: string, which: { leaves?: number[]; devices?: string[] }): Promise<{ removed: number }>;
  members(conv: string): Promise<Member[]>;
  messages(conv: string, limit?: number): Promise<Message[]>;
  /** payload: 1..65536 bytes (a string: its UTF-8 bytes); empty or longer rejects with PingError "InvalidInput", nothing sent. */
  send(conv: string, payload: string | Uint8Array): Promise<Message>;
  exportConversationSecret(conv: string, label: string, context?: Uint8Array, length?: number): Promise<Uint8Array>;
  exportStateSnapshot(conv: string): Promise<Uint8Array>;
  importStateSnapshot(snapshot: Uint8Array): Promise<Conversation>;
  joinConversation(welcome: Uint8Array): Promise<Conversation>;
  processEnvelope(envelope: Uint8Array): Promise<Message | null>;
  commitPendingProposals(): Promise<string[]>;

  invitations(): Promise<Invitation[]>;
  acceptInvitation(conv: string): Promise<Conversation>;
  declineInvitation(conv: string): Promise<{ declined: string }>;
  pendingMessages(): Promise<Message[]>;
  ackMessages(messages: { conv: string; seq: number }[]): Promise<{ acked: number }>;
  sync(): Promise<SyncResult>;

  linkRequest(label: string): Promise<LinkRequest>;
  linkFinish(grant: string, timeoutS?: number): Promise<WhoAmI>;
  linkCancel(): Promise<{ state: "none" }>;
  linkGrant(request: string, withAccountKey?: boolean): Promise<LinkGrant>;
  linkAdmit(request: string, timeoutS?: number): Promise<LinkAdmitted>;

  /** online: null until the first sync round has ended (then as the "status" event says). */
  startLive(options?: { intervalMs?: number }): Promise<{ running: boolean; online: boolean | null }>;
  stopLive(): Promise<{ running: boolean }>;
  focus(conv: string | null): Promise<{ focus: string | null }>;

  vaultStatus(): Promise<VaultStatus>;
  setPassphrase(passphrase: string | null): Promise<VaultStatus>;
  unlock(passphrase: string): Promise<VaultStatus>;
  lock(): Promise<VaultStatus>;
  pushStatus(): Promise<PushStatus>;
  enablePush(options?: Record<string, unknown>): Promise<{ endpoint: string; status: PushStatus }>;
  disablePush(): Promise<PushStatus>;
}
