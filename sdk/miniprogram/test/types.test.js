'use strict'
// Checks that need the package's devDependencies (npm install in
// sdk/miniprogram): without them these tests are reported as skipped.

const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { it } = require('node:test')

const root = path.join(__dirname, '..')

function missing (name) {
  try {
    require.resolve(name, { paths: [root] })
    return false
  } catch (e) {
    return name + ' is not installed (npm install in sdk/miniprogram)'
  }
}

it('lib/index.js parses as ES2017, which every base library runs', { skip: missing('acorn') }, function () {
  const acorn = require(require.resolve('acorn', { paths: [root] }))
  const source = fs.readFileSync(path.join(root, 'lib/index.js'), 'utf8')
  acorn.parse(source, { ecmaVersion: 2017, sourceType: 'script' })
  // And the check can fail: ES2020's optional chaining is refused.
  assert.throws(function () { acorn.parse('a?.b', { ecmaVersion: 2017 }) })
})

it('index.d.ts type-checks against the wx of miniprogram-api-typings', { skip: missing('typescript') || missing('miniprogram-api-typings') }, function () {
  const tsc = require.resolve('typescript/bin/tsc', { paths: [root] })
  const run = childProcess.spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--target', 'es2017', '--lib', 'es2017',
    '--module', 'commonjs', '--types', 'miniprogram-api-typings', path.join(__dirname, 'types/usage.ts')], { cwd: root, encoding: 'utf8' })
  assert.equal(run.status, 0, run.stdout + run.stderr)
})
