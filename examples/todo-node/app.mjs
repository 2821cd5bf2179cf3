/**
 * The live todo backend of ../todo/app.py, with the official Node SDK (iii-sdk 0.11.6), unmodified.
 *
 *   pyiii                      # an engine on the default module set (or: pyiii run ../todo/app.py)
 *   npm ci && node app.mjs     # this worker; connects to $III_URL, else ws://127.0.0.1:49134
 *   open http://127.0.0.1:3111/
 *
 * HTTP endpoints write to state (the database); two state triggers react to every change: one pushes
 * it to the browsers on ws://<host>:3112/stream/todos-live/all, the other keeps exact counters.
 */

import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { registerWorker, Logger, TriggerAction } from 'iii-sdk'

const iii = registerWorker(process.env.III_URL || 'ws://127.0.0.1:49134', {
  workerName: 'todo-app-node',
})
const logger = new Logger()

// The page is shared with the Python version of this example.
const PAGE = readFileSync(new URL('../todo/index.html', import.meta.url), 'utf8')

const state = (op, payload) => iii.trigger({ function_id: `state::${op}`, payload })
const reply = (status_code, body) => ({ status_code, body })
const idOf = (req) => (typeof req.body?.id === 'string' && req.body.id ? req.body.id : null)

// ---------------------------------------------------------------------------
// CRUD: HTTP endpoints whose handlers write to state
// ---------------------------------------------------------------------------
iii.registerFunction('todos::create', async (req) => {
  const title = req.body?.title
  if (typeof title !== 'string' || !title.trim()) return reply(400, { error: 'title is required' })
  const todo = {
    id: `todo-${randomUUID().replaceAll('-', '')}`,
    title: title.trim(),
    completed: false,
    created_at: new Date().toISOString(),
  }
  await state('set', { scope: 'todos', key: todo.id, value: todo })
  return reply(201, todo)
})

iii.registerFunction('todos::list', async () => state('list', { scope: 'todos' }))

iii.registerFunction('todos::toggle', async (req) => {
  const id = idOf(req)
  if (!id) return reply(400, { error: 'id is required' })
  const todo = await state('get', { scope: 'todos', key: id })
  if (!todo) return reply(404, { error: `todo ${id} not found` })
  let seen = Boolean(todo.completed)
  for (;;) {
    const result = await state('update', {
      scope: 'todos',
      key: id,
      ops: [
        { type: 'set', path: 'completed', value: !seen },
        { type: 'set', path: 'updated_at', value: new Date().toISOString() },
      ],
    })
    const old = result.old_value
    if (old == null) {
      // Deleted between the get and the update, which then created it again: undo that.
      await state('delete', { scope: 'todos', key: id })
      return reply(404, { error: `todo ${id} not found` })
    }
    if (Boolean(old.completed) === seen) return reply(200, result.new_value)
    // Another toggle landed between our read and our write, so ours flipped nothing: the update
    // returns the value it replaced, so flip again from that (every toggle counts exactly once).
    seen = !seen
  }
})

iii.registerFunction('todos::delete', async (req) => {
  const id = idOf(req)
  if (!id) return reply(400, { error: 'id is required' })
  const removed = await state('delete', { scope: 'todos', key: id }) // the removed value, or undefined
  if (removed == null) return reply(404, { error: `todo ${id} not found` })
  return reply(200, { id, deleted: true })
})

iii.registerFunction('todos::metrics', async () => {
  const metrics = (await state('get', { scope: 'todo-metrics', key: 'global' })) || {}
  return { total: metrics.total ?? 0, completed: metrics.completed ?? 0 }
})

iii.registerFunction('todos::page', async () => ({
  status_code: 200,
  headers: { 'content-type': 'text/html; charset=utf-8' },
  body: PAGE,
}))

const routes = [
  ['todos::create', 'POST', '/todos'],
  ['todos::list', 'GET', '/todos'],
  ['todos::toggle', 'POST', '/todos/toggle'],
  ['todos::delete', 'POST', '/todos/delete'],
  ['todos::metrics', 'GET', '/todos/metrics'],
  ['todos::page', 'GET', '/'],
]
for (const [function_id, http_method, api_path] of routes) {
  iii.registerTrigger({ type: 'http', function_id, config: { api_path, http_method } })
}

// ---------------------------------------------------------------------------
// Reactive side effect: push every change to the connected browsers
// ---------------------------------------------------------------------------
iii.registerFunction('todos::on-change', async (event) => {
  const { event_type, key, old_value, new_value } = event
  let action, todo
  if (event_type === 'state:deleted') {
    if (old_value == null) return null // a delete of a missing id changed nothing
    ;[action, todo] = ['deleted', old_value]
  } else {
    ;[action, todo] = [old_value == null ? 'created' : 'updated', new_value]
  }
  logger.info('todo changed', { action, key })
  iii.trigger({
    function_id: 'stream::send',
    payload: { stream_name: 'todos-live', group_id: 'all', type: 'todo_changed', data: { action, key, todo } },
    action: TriggerAction.Void(), // fire and forget
  })
  return { action, key }
})

iii.registerTrigger({ type: 'state', function_id: 'todos::on-change', config: { scope: 'todos' } })

// ---------------------------------------------------------------------------
// Reactive side effect: exact counters with atomic increments
// ---------------------------------------------------------------------------
iii.registerFunction('todos::update-metrics', async (event) => {
  const { event_type, old_value, new_value } = event
  const done = (value) => (value?.completed ? 1 : 0)
  let total = 0
  let completed = 0
  if (event_type === 'state:deleted') {
    if (old_value == null) return null
    ;[total, completed] = [-1, -done(old_value)]
  } else if (old_value == null) {
    ;[total, completed] = [1, done(new_value)]
  } else {
    completed = done(new_value) - done(old_value)
  }
  const ops = []
  if (total) ops.push({ type: 'increment', path: 'total', by: total })
  if (completed) ops.push({ type: 'increment', path: 'completed', by: completed })
  if (ops.length > 0) await state('update', { scope: 'todo-metrics', key: 'global', ops })
  return null
})

iii.registerTrigger({ type: 'state', function_id: 'todos::update-metrics', config: { scope: 'todos' } })
