// A worker built on the official Node iii SDK, driven by a JSON plan (tests/compat).
//
// Runs unchanged against both SDK generations: the SDK is loaded from the node_modules of
// $III_COMPAT_NODE_DIR (default: the working directory), e.g. tests/compat/node/v0.22.1 or
// tests/compat/node/v0.11.6. ESM ignores NODE_PATH, so the SDK is loaded with a require() rooted
// there (its CommonJS build; the package ships both builds from the same source).
//
// Same plan, commands and event lines as py_worker.py (see tests/compat/README.md):
//   input:  the plan as JSON text in argv[2] (or `@path`), else $COMPAT_PLAN; then one JSON command
//           per stdin line.
//   output: one JSON event per stdout line. The SDK's own console output (it prints to stdout)
//           is redirected to stderr and also reported as `sdk_log` events.
//   stops:  on stdin EOF, SIGTERM, {"cmd":"exit"}, or after the plan's calls with
//           "exit_after_calls": true; the SDK is shut down first (close frame).

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { format } from 'node:util'

// How often the connection state is sampled: the Node SDKs keep it in a field and expose no listener.
const STATE_POLL_MS = 20
// Interval of the readiness poll (engine::workers::list) while registrations settle.
const SYNC_POLL_MS = 20

const writeOut = process.stdout.write.bind(process.stdout)

function emit(event, fields = {}) {
  writeOut(`${JSON.stringify({ event, ...fields })}\n`)
}

// The SDKs print with console.log/debug (to stdout); keep stdout for events only.
for (const level of ['log', 'info', 'debug', 'warn', 'error']) {
  console[level] = (...args) => {
    const message = format(...args)
    process.stderr.write(`${message}\n`)
    emit('sdk_log', { level, logger: 'console', message })
  }
}

const sdkDir = path.resolve(process.env.III_COMPAT_NODE_DIR ?? process.cwd())
const requireSdk = createRequire(path.join(sdkDir, 'package.json'))
const sdk = requireSdk('iii-sdk')
const SDK_VERSION = JSON.parse(readFileSync(path.join(sdkDir, 'node_modules', 'iii-sdk', 'package.json'), 'utf8')).version
const LEGACY = SDK_VERSION.startsWith('0.11.')
const SDK_ID = `node-${SDK_VERSION}`
// 0.11.6 exports Logger from the main package; 0.22.1 only from its helpers package.
const Logger = LEGACY ? sdk.Logger : requireSdk('@iii-dev/helpers/observability').Logger

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const jsonLen = (value) => Buffer.byteLength(JSON.stringify(value ?? null), 'utf8')

function errorFields(error) {
  if (error && typeof error.code === 'string') {
    // InvocationError's message is `${code}: ${message}`; report the engine's message alone.
    const prefix = `${error.code}: `
    const message = error.message?.startsWith(prefix) ? error.message.slice(prefix.length) : error.message
    return { code: error.code, message, stacktrace: error.stacktrace ?? null }
  }
  return { code: `EXCEPTION:${error?.name ?? typeof error}`, message: String(error?.message ?? error) }
}

function loadPlan() {
  let text = process.argv[2] ?? process.env.COMPAT_PLAN ?? ''
  if (text.startsWith('@')) text = readFileSync(text.slice(1), 'utf8')
  const plan = JSON.parse(text)
  if (plan === null || typeof plan !== 'object' || typeof plan.url !== 'string') {
    throw new Error("the plan must be a JSON object with a string 'url'")
  }
  return plan
}

class Worker {
  constructor(plan) {
    this.plan = plan
    this.name = plan.worker_name ?? `compat-${SDK_ID}-${process.pid}`
    this.client = null
    this.functions = new Map() // id -> FunctionRef
    this.counted = new Set() // ids expected in this connection's function_count
    this.providers = new Map() // trigger type id -> {spec, bindings}
    this.triggers = new Map() // key -> Trigger
    this.stopping = false
  }

  // Connecting

  async connect() {
    if (this.client) return
    this.client = sdk.registerWorker(this.plan.url, this.options())
    this.watchConnectionState()
    await this.waitConnected(this.plan.connect_timeout_ms ?? 30000)
    this.registerAll()
    const sync = (this.plan.ready ?? 'registered') === 'registered'
      ? await this.sync(this.plan.ready_timeout_ms ?? 20000)
      : { verified: false }
    emit('ready', { sdk: SDK_ID, worker_id: this.client.workerId ?? null, name: this.name, pid: process.pid, ...sync })
    await this.runPlan()
  }

  options() {
    const opts = { workerName: this.name }
    if (this.plan.headers) opts.headers = this.plan.headers
    if (this.plan.invocation_timeout_ms) opts.invocationTimeoutMs = this.plan.invocation_timeout_ms
    if (this.plan.reconnect) {
      const r = this.plan.reconnect
      opts.reconnectionConfig = {
        initialDelayMs: r.initial_delay_ms,
        maxDelayMs: r.max_delay_ms,
        backoffMultiplier: r.backoff_multiplier,
        jitterFactor: r.jitter_factor,
        maxRetries: r.max_retries,
      }
      for (const key of Object.keys(opts.reconnectionConfig)) {
        if (opts.reconnectionConfig[key] === undefined) delete opts.reconnectionConfig[key]
      }
    }
    if (this.plan.description && !LEGACY) opts.workerDescription = this.plan.description
    // Neither Node generation has a worker namespace.
    if (this.plan.namespace != null) emit('unsupported', { feature: 'namespace', sdk: SDK_ID })
    return opts
  }

  watchConnectionState() {
    let last
    const timer = setInterval(() => {
      const state = this.client.connectionState
      if (state !== last) {
        emit('connection_state', { state })
        last = state
      }
    }, STATE_POLL_MS)
    timer.unref()
  }

  async waitConnected(timeoutMs) {
    const deadline = Date.now() + timeoutMs
    let reported = false
    while (this.client.connectionState !== 'connected') {
      if (!reported && Date.now() > deadline) {
        emit('connect_timeout', { url: this.plan.url, timeout_ms: timeoutMs })
        reported = true // keep waiting: the SDK retries in the background
      }
      await sleep(STATE_POLL_MS)
    }
  }

  registerAll() {
    for (const spec of this.plan.trigger_types ?? []) this.registerTriggerType(spec)
    for (const spec of this.plan.services ?? []) this.registerService(spec)
    for (const spec of this.plan.functions ?? []) this.registerFunction(spec)
    ;(this.plan.triggers ?? []).forEach((spec, i) => this.registerTrigger(spec, spec.key ?? `plan-${i}`))
  }

  // Waits until the engine lists this connection (its workerId changes on every reconnect) with all
  // the functions it is expected to own: registrations travel without acknowledgement.
  async sync(timeoutMs = 20000) {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const workerId = this.client.workerId
      let listing = null
      try {
        listing = await this.client.trigger({ function_id: 'engine::workers::list', payload: {}, timeoutMs: 5000 })
      } catch (error) {
        if (error?.code === 'function_not_found') return { verified: false }
      }
      for (const entry of listing?.workers ?? []) {
        if (workerId && entry.id === workerId && (entry.function_count ?? 0) >= this.counted.size) {
          return { verified: true }
        }
      }
      if (Date.now() > deadline) {
        throw new Error(`engine never listed worker ${workerId} with ${this.counted.size} functions: ${JSON.stringify(listing)}`)
      }
      await sleep(SYNC_POLL_MS)
    }
  }

  // Registrations

  registerFunction(spec) {
    const options = {}
    for (const key of ['description', 'metadata', 'request_format', 'response_format']) {
      if (key in spec) options[key] = spec[key]
    }
    this.functions.set(spec.id, this.client.registerFunction(spec.id, this.handler(spec), options))
    if (spec.expect_registered ?? true) this.counted.add(spec.id)
  }

  unregisterFunction(id) {
    this.functions.get(id).unregister()
    this.functions.delete(id)
    this.counted.delete(id)
  }

  registerTriggerType(spec) {
    const provider = { spec, bindings: new Map() }
    this.providers.set(spec.id, provider)
    const fields = (cfg) => ({
      trigger_type: spec.id,
      id: cfg.id,
      function_id: cfg.function_id,
      config: cfg.config ?? null,
      metadata: cfg.metadata ?? null,
      namespace: null,
    })
    this.client.registerTriggerType({ id: spec.id, description: spec.description ?? `${spec.id} (${SDK_ID})` }, {
      registerTrigger: async (cfg) => {
        // Stored before the event: a test may `fire` as soon as it sees the event.
        if (!spec.fail) provider.bindings.set(cfg.id, cfg)
        emit('trigger_register', fields(cfg))
        if (spec.fail) throw new Error(spec.fail)
        if ('fire_on_register' in spec) this.fire(provider, cfg, spec.fire_on_register)
      },
      unregisterTrigger: async (cfg) => {
        provider.bindings.delete(cfg.id)
        emit('trigger_unregister', fields(cfg))
      },
    })
  }

  unregisterTriggerType(id) {
    this.providers.delete(id)
    this.client.unregisterTriggerType({ id, description: '' })
  }

  registerTrigger(spec, key) {
    const body = {}
    for (const k of ['type', 'function_id', 'config', 'metadata']) if (k in spec) body[k] = spec[k]
    if ('namespace' in spec || 'trigger_namespace' in spec) emit('unsupported', { feature: 'trigger namespace', sdk: SDK_ID })
    this.triggers.set(key, this.client.registerTrigger(body))
  }

  registerService(spec) {
    if (typeof this.client.registerService !== 'function') {
      emit('unsupported', { feature: 'registerService', sdk: SDK_ID })
      return
    }
    this.client.registerService(spec)
  }

  handler(spec) {
    const fid = spec.id
    const kind = spec.kind ?? 'echo'
    // 0.22.1 passes (data, metadata); 0.11.6 passes (data) only.
    return async (data, metadata) => {
      const seen = spec.quiet ? { data_len: jsonLen(data) } : { data: data ?? null }
      emit('invoked', { function_id: fid, metadata: metadata ?? null, worker: this.name, ...seen })
      if (kind === 'sleep') await sleep(spec.ms ?? 1000)
      else if (kind === 'fail') throw new Error(spec.message ?? `${fid} failed`)
      else if (kind === 'big') {
        emit('returned', { function_id: fid })
        return 'x'.repeat(spec.bytes)
      } else if (kind === 'relay') {
        const relayed = await this.client.trigger({ function_id: spec.target, payload: data })
        emit('returned', { function_id: fid })
        return { relayed: relayed ?? null, worker: this.name, sdk: SDK_ID }
      } else if (kind === 'log') new Logger()[spec.level ?? 'info'](spec.message ?? fid, data)
      emit('returned', { function_id: fid })
      return { got: data ?? null, meta: metadata ?? null, worker: this.name, sdk: SDK_ID, pid: process.pid, function_id: fid }
    }
  }

  // Calls, logs, fires

  async call(spec) {
    const request = { function_id: spec.function_id }
    if ('payload_blob_bytes' in spec) request.payload = { blob: 'x'.repeat(spec.payload_blob_bytes) }
    else if ('payload' in spec) request.payload = spec.payload
    if (spec.action === 'void') request.action = sdk.TriggerAction.Void()
    else if (spec.action === 'enqueue') request.action = sdk.TriggerAction.Enqueue({ queue: spec.queue ?? 'default' })
    if ('timeout_ms' in spec) request.timeoutMs = spec.timeout_ms
    if ('metadata' in spec) request.metadata = spec.metadata
    if ('namespace' in spec) request.namespace = spec.namespace // ignored by both Node generations
    const started = Date.now()
    try {
      const result = await this.client.trigger(request)
      const fields = { ok: true, elapsed_ms: Date.now() - started }
      if (spec.quiet) fields.result_len = jsonLen(result)
      else fields.result = result ?? null
      return fields
    } catch (error) {
      return { ok: false, elapsed_ms: Date.now() - started, ...errorFields(error) }
    }
  }

  log(spec) {
    const logger = spec.service_name ? new Logger(undefined, spec.service_name) : new Logger()
    logger[spec.level ?? 'info'](spec.message, spec.data)
  }

  // Fires one binding the way a provider does: an ordinary call to the bound function.
  async fire(provider, binding, payload) {
    const spec = { function_id: binding.function_id, payload }
    if (binding.metadata != null) spec.metadata = binding.metadata
    emit('fired', { trigger_type: provider.spec.id, trigger_id: binding.id, ...(await this.call(spec)) })
  }

  async runPlan() {
    const calls = this.plan.calls ?? []
    for (let index = 0; index < calls.length; index++) {
      emit('call_result', { index, function_id: calls[index].function_id, ...(await this.call(calls[index])) })
    }
    ;(this.plan.logs ?? []).forEach((spec, index) => {
      this.log(spec)
      emit('logged', { index })
    })
    emit('plan_done')
    if (this.plan.exit_after_calls) await this.stop()
  }

  // Commands

  async runCommand(cmd) {
    const id = cmd.id ?? null
    try {
      if (cmd.cmd === 'connect') {
        this.connectGuarded()
        emit('reply', { id, ok: true })
        return
      }
      if (cmd.cmd === 'exit') {
        emit('reply', { id, ok: true })
        await this.stop()
        return
      }
      if (!this.client) throw new Error("not connected yet: send {cmd: 'connect'} first")
      if (cmd.cmd === 'call') {
        emit('call_result', { id, function_id: cmd.function_id, ...(await this.call(cmd)) })
        return
      }
      emit('reply', { id, ok: true, ...((await this.command(cmd)) ?? {}) })
    } catch (error) {
      emit('reply', { id, ok: false, ...errorFields(error), traceback: error?.stack ?? null })
    }
  }

  async command(cmd) {
    switch (cmd.cmd) {
      case 'sync':
        return { worker_id: this.client.workerId ?? null, ...(await this.sync(cmd.timeout_ms ?? 20000)) }
      case 'state':
        return { state: this.client.connectionState, worker_id: this.client.workerId ?? null }
      case 'log':
        this.log(cmd)
        return null
      case 'register_function':
        this.registerFunction(cmd.function)
        return null
      case 'unregister_function':
        this.unregisterFunction(cmd.function_id)
        return null
      case 'register_trigger_type':
        this.registerTriggerType(cmd.trigger_type)
        return null
      case 'unregister_trigger_type':
        this.unregisterTriggerType(cmd.trigger_type_id)
        return null
      case 'register_trigger':
        this.registerTrigger(cmd.trigger, cmd.key)
        return null
      case 'unregister_trigger':
        this.triggers.get(cmd.key).unregister()
        this.triggers.delete(cmd.key)
        return null
      case 'register_service':
        this.registerService(cmd.service)
        return null
      case 'fire': {
        const provider = this.providers.get(cmd.trigger_type)
        const bindings = [...provider.bindings.values()].filter((b) => cmd.trigger_id == null || b.id === cmd.trigger_id)
        await Promise.all(bindings.map((b) => this.fire(provider, b, cmd.payload)))
        return { fired: bindings.length }
      }
      default:
        throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}`)
    }
  }

  connectGuarded() {
    this.connect().catch((error) => {
      emit('fatal', { stage: 'connect', ...errorFields(error), traceback: error?.stack ?? null })
      this.stop()
    })
  }

  async stop() {
    if (this.stopping) return
    this.stopping = true
    const force = setTimeout(() => finish(), 5000)
    try {
      if (this.client) await this.client.shutdown()
    } catch (error) {
      process.stderr.write(`shutdown failed: ${error?.stack ?? error}\n`)
    }
    clearTimeout(force)
    finish()
  }
}

function finish() {
  emit('exit', { code: 0 })
  process.exit(0)
}

function main() {
  let plan
  try {
    plan = loadPlan()
  } catch (error) {
    emit('fatal', { stage: 'plan', code: 'bad_plan', message: String(error?.message ?? error) })
    process.exit(2)
  }
  const worker = new Worker(plan)
  process.on('SIGTERM', () => worker.stop())
  const osString = `${os.platform()} ${os.release()} (${os.arch()})` // as in the SDK's register payload
  emit('started', { sdk: SDK_ID, sdk_version: SDK_VERSION, pid: process.pid, os: osString, name: worker.name })
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  lines.on('line', (line) => {
    if (!line.trim()) return
    let cmd
    try {
      cmd = JSON.parse(line)
    } catch (error) {
      emit('reply', { id: null, ok: false, code: 'bad_command', message: String(error.message) })
      return
    }
    worker.runCommand(cmd)
  })
  lines.on('close', () => worker.stop())
  if ((plan.connect ?? 'now') === 'now') worker.connectGuarded()
}

main()
