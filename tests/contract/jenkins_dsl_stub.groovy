// A recording stub of Jenkins' declarative pipeline DSL, for tests/contract/test_jenkinsfile.py
// (and, with --exec, tests/contract/test_jenkins_stub_exec.py).
//
//     groovy tests/contract/jenkins_dsl_stub.groovy [--fail REGEX | --exec CONFIG.json]
//         [--tag NAME] [--env KEY=VALUE]... path/to/Jenkinsfile
//
// It evaluates the Jenkinsfile as Groovy. Every DSL call reaches a Recorder through
// methodMissing / propertyMissing (closures run with the Recorder as delegate, DELEGATE_FIRST),
// so steps need not be listed one by one; the Recorder only knows the declarative structure
// (pipeline, stages, stage, steps, post, when, agent, environment, options, ...). It prints on
// stdout a JSON description of what it saw:
//
//     {"agent": "any", "agent_label": null, "options": [...], "environment": {...},
//      "sh": [...], "steps": [...], "post": {"always": ["archiveArtifacts"]},
//      "ran_sh": [], "ran_steps": ["archiveArtifacts"],
//      "ran_post": {"always": ["archiveArtifacts"]}, "result": "FAILURE",
//      "simulation": {"fail": "invoke gate", "tag": null, "env": {"ref": "refs/heads/main"}},
//      "not_simulated": [],
//      "stages": [{"name": "Train", "parent": null, "agent": "label", "agent_label": "gpu",
//                  "when": false, "when_conditions": [], "sh": ["bash .ci/bootstrap", ...],
//                  "steps": ["stash"], "post": {}, "environment": {}, "options": [],
//                  "status": "skipped", "skip_reason": "failure", "when_result": null,
//                  "error": null, "ran_sh": [], "ran_steps": [], "ran_post": {}}, ...]}
//
// What the Jenkinsfile declares: "sh" holds the scripts of the sh steps and "steps" the names of
// all other steps, in order, both including steps nested in block steps (lock, timeout, script,
// ...) and in post, whether or not they would run; "post" maps each post condition to the names
// of its steps (sh included). Pipeline-level "sh" and "steps" hold what runs outside any stage
// (pipeline post, environment values). A DSL call written as another call's argument is no step:
// logRotator in buildDiscarder(logRotator(...)), the bindings string(...), usernamePassword(...)
// and usernameColonPassword(...) in withCredentials([...]) (withCredentials is recorded).
//
// The pipeline's triggers { } and parameters { } are recorded as "triggers" ([{"cron": spec}])
// and "parameters" ([{"type": "string", "name", "defaultValue", "description", "trim"}]), and
// checked as Jenkins checks them when a build applies them to the job: a cron spec that
// CronTabList refuses (five fields of N, N-M, *, H, H(N-M) terms in range, with /STEP after all
// but N; an alias such as @daily; # comments and a first TZ= line), a string parameter without
// a name or with an argument StringParameterDefinition does not take, are errors (exit 3).
// Other triggers and parameter types are refused as not modelled. They do not change what a
// build sees: params.X reads the job's parameters (with --exec, the config's params).
//
// What a build would run: after recording, the stub runs the pipeline once more the way Jenkins
// would (evaluating steps and post blocks a second time), with every sh step succeeding except
// those whose script matches --fail REGEX (found anywhere in the script, like a non-zero exit; `sh
// returnStatus: true` then returns 1 instead). A failing sh (or an `error` step) ends its stage:
// the rest of the stage's steps do not run, the failure leaving any block step around it
// (withSonarQubeEnv, timeout, lock, ...; `retry` runs its body again, up to its count, and a
// scripted `parallel` step runs every branch first). The stage's post conditions then run, the
// stage is "failed", the build result FAILURE, and every later stage "skipped" (skip_reason
// "failure"). A stage whose `when` is false is "skipped" too (skip_reason "when"), without its
// post; a skipped stage's nested stages are skipped with it. `when` knows buildingTag(), tag, not,
// allOf, anyOf and expression: the build is for a tag only with --tag NAME (env.TAG_NAME), and an
// expression { ... } runs as Jenkins runs it, its truth (Groovy truth) being the condition's.
// Conditions are evaluated left to right and stop where the result is known (anyOf at the first
// true one, allOf and the when block at the first false one), as in Jenkins. Other conditions
// (branch, environment, changeset, ...) cannot be known here, so "when_result" is "unknown" and
// the stage runs as if they held ("when_result" is null where no when was evaluated). An error
// evaluating an expression (an exception, a failing sh) fails the stage as in Jenkins: it is
// "failed" with "when_result" "error" and the error in "error", its post does not run (nor do its
// nested stages: skip_reason "failure"), and the build goes on as after any failed stage.
//
// The simulated build's environment: `env` holds the variables given with --env KEY=VALUE
// (repeatable; what a trigger or a job parameter sets, such as the Generic Webhook Trigger's
// `ref`) and TAG_NAME with --tag NAME, then the pipeline's environment section and, in a stage,
// those of its enclosing stages. A stage's own environment applies to its steps and post, not to
// its when (Jenkins evaluates when first). As in Jenkins a variable that is not set reads null
// (env.X), and inside an expression a bare name that is neither a variable of the Jenkinsfile nor
// a set environment variable is an error ("No such property"). A Groovy error in a step of the
// simulated build (a method called on null, ...) fails its stage like a failing sh. (When the
// stub records the Jenkinsfile, before the simulated build, env answers '' for any name and
// expression bodies do not run.) Post conditions run in Jenkins' order
// (always, changed, fixed, regression, aborted, failure, success, unstable, unsuccessful, notBuilt,
// cleanup) and on Jenkins' terms, for a first build (changed runs; fixed and regression do not); a
// failure inside one marks its stage (or the build) failed and the remaining ones still run. Per
// stage (and for the pipeline) "ran_sh" and "ran_steps" hold the scripts and step names that ran,
// in order, post included, and "ran_post" maps each post condition that ran to the names of its
// steps that ran. "status" is "passed", "failed" or "skipped"; "error" says what failed. Parallel
// stages run one after another, in order, each to its end. Not simulated: UNSTABLE and ABORTED
// results, failFast, catchError and warnError (a failure still leaves them), the `unstable` step
// (it changes nothing); where a run meets one of these, "not_simulated" says so.
//
// Execution (--exec CONFIG.json): instead of the simulated build above, the recorded pipeline
// runs for real, the way a Jenkins controller with agents runs it: each stage's steps run on
// the agent its `agent` directive selects, sh steps as processes in that agent's workspace,
// with the environment Jenkins gives them. (--fail is refused with --exec; --tag and --env
// add to the build's variables.) CONFIG.json:
//
//     {"job_name": "mlci",                            the job's full name
//      "build_env": {"BUILD_NUMBER": "1", ...},       the build's variables (trigger's, ...)
//      "params": {"commit": "..."},                   job parameters: params.X, and env.X
//      "global_env": {"KEY": "VALUE"},                the global node properties' env
//      "nodes": [{"name": "docker-agent", "labels": ["docker"], "mode": "NORMAL",
//                 "executors": 2, "root": "/abs/dir", "process_env": {"PATH": "/usr/bin:/bin"},
//                 "env": {"KEY": "VALUE"}}, ...],     the agent process's env, the node's env
//      "checkout": {"command": ["/abs/script", "arg", ...]},
//      "credentials": {"id": {"type": "string", "secret": "..."},
//                      "id2": {"type": "usernamePassword", "username": "...", "password": "...",
//                              "username_secret": false}},
//      "sonar_installations": {"sonarqube": {"url": "...", "credentials_id": "id",
//                                            "server_version": "10.4"}},
//      "build_dir": "/abs/dir"}
//
// job_name, nodes and build_dir are required, the rest optional (mode NORMAL or EXCLUSIVE,
// default NORMAL; executors default 1); an unknown key, a wrong type or a relative path is
// refused with exit status 64. What runs, in Jenkins' order (ModelInterpreter):
//
// - The pipeline's agent wraps its environment, its options (timeout), the stages and its
//   post. A stage: when (beforeOptions), options (timeout), when (beforeInput, beforeAgent, or
//   a parallel parent's), the agent with its checkout, when, environment, steps, post. A
//   failure before the steps (agent, checkout, environment, when) fails the stage without
//   its post. STAGE_NAME is the stage's ('Declarative: Post Actions' in the pipeline's post).
// - Agents. `agent none`: no node. `agent any`: the first node (in config order) with
//   executors that is not EXCLUSIVE. `agent { label X }` (a GString is evaluated when the
//   stage starts, with the build's env, global_env included; recorded as "node_label"): the
//   first node whose labels or name satisfy the label expression (&&, ||, !, ->, <->, ( )).
//   No such node: the stage fails at once ("no node has label 'X': Jenkins would wait in the
//   queue forever"); so it does when each such node's executors are all held by this build.
//   The workspace is <root>/workspace/<job_name>; while it is held (the pipeline's agent on
//   the same node), <...>@2, @3, .... Stages one after another on one node share it. A
//   scripted node(label) { } (in script) allocates the same way, without checkout.
// - The declarative checkout, when an agent starts: unless skipDefaultCheckout (the
//   pipeline's options or the stage's) and only if the config has a checkout command (a job
//   without SCM does none), checkout.command runs in the workspace (checkoutToSubdirectory
//   honoured) with the node's process_env plus WORKSPACE and NODE_NAME; non-zero fails the
//   stage. "checkout": {exit_code, seconds}. `checkout scm` runs it in the current directory.
// - sh: the script goes to <dir>@tmp/durable-.../script.sh and runs with /bin/sh -xe (or
//   itself, when it starts with #!), in the current directory, in a session of its own; its
//   output (stdout and stderr; only stderr with returnStdout) reaches the console as it
//   comes. returnStatus returns the exit code, returnStdout stdout; otherwise a non-zero
//   exit fails the step: "script returned exit code N". Its environment, later layers
//   winning: the node's process_env; global_env then the node's env, merged and expanded
//   ($X, ${X}) over it; the build's variables (build_env, params, --env, TAG_NAME, env.X =
//   assignments); WORKSPACE, WORKSPACE_TMP, NODE_NAME, NODE_LABELS, EXECUTOR_NUMBER; then the
//   bindings of the enclosing blocks, outermost first: STAGE_NAME, the pipeline's
//   environment, the stage's, withEnv / withCredentials / withSonarQubeEnv; plus
//   JENKINS_SERVER_COOKIE. Each binding is EnvVars.override: an empty value unsets, NAME+X=v
//   prepends "v:" to NAME. env.X in Groovy reads the same; outside a node, global_env
//   overlaid with the build's variables and the bindings.
// - environment { }: evaluated when it applies, each value seeing those before it (an sh in
//   a value runs). X = credentials('id') binds secret text as X; username with password as X
//   (user:pass), X_USR and X_PSW; an unknown id fails the stage with Declarative's
//   "CredentialNotFoundException: id".
// - withCredentials([string(credentialsId:, variable:), usernamePassword(credentialsId:,
//   usernameVariable:, passwordVariable:), usernameColonPassword(credentialsId:, variable:)])
//   binds for its block; an unknown id fails ("Could not find credentials entry with ID
//   'id'"), so does a credential of another type.
// - withSonarQubeEnv('name') (or installationName:, credentialsId:), for its block: what the
//   plugin's SonarBuildWrapper sets: SONAR_CONFIG_NAME, SONAR_HOST_URL (the url, or
//   http://localhost:9000), SONAR_AUTH_TOKEN (the installation's secret text; empty, so unset,
//   when it is missing), SONAR_MAVEN_GOAL=sonar:sonar, SONAR_EXTRA_PROPS (empty: unset) and
//   SONARQUBE_SCANNER_PARAMS ({ "sonar.host.url" : "...", "sonar.login" : "token"}, escaped
//   as commons-lang3's escapeJson does, '/' as \/; sonar.token for server_version >= 10 and
//   SonarCloud, as the plugin decides after asking the server). An unknown name fails with
//   the plugin's message.
// - Masking: the secrets bound around a step (credentials' values, a username only with
//   username_secret, the sonar token) read **** in console.log and on stderr;
//   console-raw.log keeps the unmasked text, for tests that check no secret is printed.
// - stash (name, includes: comma-separated Ant patterns, default **; excludes,
//   useDefaultExcludes, allowEmpty) copies from the current directory to build_dir/stashes;
//   no file: "No files included in stash ‘x’". unstash copies into the current directory;
//   an unknown name: "No such saved stash ‘x’".
// - archiveArtifacts (artifacts, excludes, allowEmptyArchive, onlyIfSuccessful) copies to
//   build_dir/archive; no match fails ('No artifacts found that match the file pattern "p".
//   Configuration error?') unless allowEmptyArchive, or the build (in post, the stage) has
//   already failed, where ArtifactArchiver stays silent.
// - junit (testResults, allowEmptyResults) counts the testcase elements of the matching XML
//   files (tests, failures, errors, skipped); no file: "No test report files were found.
//   Configuration error?"; files without a test case: "None of the test reports contained any
//   result". Failed tests would make the build UNSTABLE (noted in "not_simulated").
// - recordCoverage(tools: [[parser:, pattern:]]) records the files each pattern matches
//   (COBERTURA and JACOCO have the plugin's default pattern); none is logged, not a failure.
// - timeout(time:, unit: MINUTES by default), as a block step or in a stage's or the
//   pipeline's options: when its deadline passes, the running sh (its process group and any
//   process carrying its JENKINS_SERVER_COOKIE) gets SIGTERM, SIGKILL 3 s later, and the step
//   fails with "Timeout has been exceeded" (sh_results: "timed_out": true); so does a step
//   that starts after it. A post that runs after it is no longer bound by it (Jenkins gives a
//   grace period). retry does not retry it.
// - A step needing a workspace (sh, stash, unstash, archiveArtifacts, junit, recordCoverage,
//   dir, checkout, deleteDir, writeFile, readFile, fileExists, pwd, isUnix, withSonarQubeEnv)
//   outside a node fails: "Required context class hudson.FilePath is missing / Perhaps you
//   forgot to surround the X step with a step that provides this, such as: node". In steps
//   and post (agent none), Declarative reports it as "Attempted to execute a step that
//   requires a node context while ‘agent none’ was specified. ...", followed here by the
//   step's own message.
// - Also real: dir, deleteDir, writeFile, readFile, fileExists, pwd, isUnix, echo (to the
//   console), sleep. lock, timestamps, buildDiscarder, disableConcurrentBuilds: no effect.
//
// Not simulated by --exec (noted in "not_simulated" where a run meets them): the UNSTABLE and
// ABORTED results (a timeout counts as FAILURE: post runs failure, not aborted), docker,
// dockerfile and kubernetes agents (the stage fails), customWorkspace, input, tools, the
// pipeline's retry and other options, timeout(activity: true) (a plain timeout here), the
// variables checkout returns (GIT_COMMIT, ...), other credential types, concurrency (parallel
// branches run one after another), waiting in the queue (a missing or busy node fails at
// once), and every other step: recorded, not run.
//
// --exec adds to the JSON: per stage and for the pipeline "node" (name or null), "node_label",
// "workspace", "checkout" and "sh_results": [{"script", "exit_code", "seconds"}]; the
// pipeline's "error"; at the top "archived" (relative paths), "stashes" {name: [paths]},
// "junit" and "coverage" (summaries), "console_log" and "console_raw_log" (in build_dir), and
// "simulation"."exec" (the config's path). The build's output goes to the console logs and to
// stderr, never to stdout; the exit status is 0 whatever the build's result.
//
// Whatever the Jenkinsfile prints goes to stderr: stdout carries the JSON only.
//
// Exit status: 0 JSON printed; 2 the Jenkinsfile does not compile; 3 its structure is not a
// declarative pipeline (unknown or repeated section, a stage without steps, two DSL calls
// chained on one line, ...); 4 another error while evaluating it; 64 usage (an --env without
// KEY=, a KEY given twice, --env TAG_NAME=... together with --tag, --fail with --exec, a bad
// --exec config, a KEY both --env and the config set, ...).

import groovy.json.JsonOutput
import org.codehaus.groovy.ast.ClassCodeExpressionTransformer
import org.codehaus.groovy.ast.ClassNode
import org.codehaus.groovy.ast.expr.ClosureExpression
import org.codehaus.groovy.ast.expr.ConstantExpression
import org.codehaus.groovy.ast.expr.Expression
import org.codehaus.groovy.ast.expr.MethodCallExpression
import org.codehaus.groovy.classgen.GeneratorContext
import org.codehaus.groovy.control.CompilationFailedException
import org.codehaus.groovy.control.CompilePhase
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.SourceUnit
import org.codehaus.groovy.control.customizers.CompilationCustomizer

/**
 * Groovy resolves a call inside a closure to a method of the closure object itself before
 * asking the delegate, whatever the resolve strategy, and every object has print, println,
 * printf and sleep (Groovy's Object extensions). Left alone, `sleep 5` or `println 'x'` in a
 * steps block would run instead of being recorded. This rewrites such calls (without an
 * explicit receiver) to a prefixed name no object has, which the Recorder turns back.
 */
class ShadowedStepRenamer extends CompilationCustomizer {
    static final String PREFIX = 'jenkinsDslStub__'
    static final List NAMES = ['print', 'println', 'printf', 'sleep']

    ShadowedStepRenamer() {
        super(CompilePhase.CONVERSION)
    }

    void call(SourceUnit source, GeneratorContext context, ClassNode classNode) {
        def transformer = new ClassCodeExpressionTransformer() {
            protected SourceUnit getSourceUnit() { source }

            Expression transform(Expression e) {
                if (e instanceof ClosureExpression) {
                    e.code?.visit(this)
                    return e
                }
                Expression t = e?.transformExpression(this)
                if (t instanceof MethodCallExpression && t.implicitThis && t.methodAsString in NAMES) {
                    t.method = new ConstantExpression(PREFIX + t.methodAsString)
                }
                return t
            }
        }
        transformer.visitClass(classNode)
    }
}

/** A structure error; the message ends with the Jenkinsfile line being evaluated. */
class StubError extends RuntimeException {
    static String sourceName = 'Jenkinsfile'

    StubError(String message) {
        super(message + where(new Throwable()))
    }

    static String where(Throwable t) {
        def frame = t.stackTrace.find { it.fileName == sourceName && it.lineNumber > 0 }
        frame ? " (${sourceName} line ${frame.lineNumber})" : ''
    }
}

/**
 * What a DSL call returns. Groovy reads `steps { ... } post { ... }` on one line as
 * `steps({ ... }).post({ ... })`: the second call lands here instead of on the Recorder, and
 * fails instead of being silently recorded in the wrong place.
 */
class ChainGuard {
    final String call
    final List<List> recordedIn

    ChainGuard(String call, List<List> recordedIn = []) {
        this.call = call
        this.recordedIn = recordedIn
    }

    private StubError chained(String what) {
        new StubError("`${what}` is applied to the result of `${call}`: Groovy reads two DSL " +
            "calls on one line as a chain (a {..} b {..} is a({..}).b({..})); put each on its own line")
    }

    def methodMissing(String name, Object args) { throw chained(name) }

    def propertyMissing(String name) { throw chained(name) }

    def propertyMissing(String name, Object value) { throw chained(name) }

    // Object methods Groovy adds to every class; a chained step with such a name must fail too.
    def sleep(long ms) { throw chained('sleep') }

    def print(Object value) { throw chained('print') }

    def println(Object value) { throw chained('println') }

    String toString() { "<result of ${call}>" }
}

/** A bare name: `any` in `agent any`, `scm` in `checkout scm`, an environment variable. */
class Symbol {
    final String name

    Symbol(String name) { this.name = name }

    def propertyMissing(String property) { '' }

    String toString() { name }
}

/** The innermost DSL block being evaluated. */
class Frame {
    String kind          // root, pipeline, stages, stage, agent, when, post, steps, environment, options,
                         // directive, expression (a when expression's body, in the simulated build)
    Map owner            // the stage (or the pipeline) that steps in this frame belong to
    List postSteps       // inside post { <condition> { ... } }: that condition's step names
    Map parentStage      // in a stages / parallel block nested in a stage: that stage
    List conds           // in when (or allOf / anyOf / not): the condition nodes of this level
    boolean exec         // steps that run in the simulated build (not only recorded)
    boolean envValue     // --exec: a step called in an environment value (outside the steps' node check)
    Set sections = [] as Set
}

/** A step that fails in the simulated build: it ends its stage (or post condition). */
class StepFailure extends RuntimeException {
    StepFailure(String message) {
        super(message)
    }
}

/** --exec: a `timeout` whose deadline passed. Jenkins ends such a build ABORTED. */
class StepTimeout extends StepFailure {
    StepTimeout() {
        super('Timeout has been exceeded')
    }
}

/** --exec: `X = credentials('id')` in an environment section, bound when the section runs. */
class CredentialRef {
    final String id

    CredentialRef(String id) { this.id = id }

    String toString() { "credentials(${id})" }
}

/**
 * A credential binding (string, usernamePassword, usernameColonPassword) written in the list
 * withCredentials takes: an argument of that step, not a step of its own.
 */
class CredentialBinding extends ChainGuard {
    final Map options

    CredentialBinding(String call, List<List> recordedIn, Object[] args) {
        super(call, recordedIn)
        this.options = args.length > 0 && args[0] instanceof Map ? new LinkedHashMap((Map) args[0]) : [:]
    }
}

/** --exec: CONFIG.json, validated. A bad one is a ConfigError (exit status 64). */
class ExecConfig {
    static class ConfigError extends RuntimeException {
        ConfigError(String message) { super(message) }
    }

    static final List TOP_KEYS = [
        'job_name', 'build_env', 'params', 'global_env', 'nodes', 'checkout', 'credentials',
        'sonar_installations', 'build_dir',
    ]
    static final List NODE_KEYS = ['name', 'labels', 'mode', 'executors', 'root', 'process_env', 'env']

    String path
    String jobName
    Map<String, String> buildEnv
    Map params
    Map<String, String> globalEnv
    List<ExecNode> nodes = []
    List<String> checkoutCommand
    Map<String, Map> credentials = [:]
    Map<String, Map> sonar = [:]
    File buildDir

    static ExecConfig load(File file) {
        if (!file.isFile()) {
            throw new ConfigError("--exec ${file}: not a file")
        }
        def data
        try {
            data = new groovy.json.JsonSlurper().parse(file, 'UTF-8')
        } catch (Exception e) {
            throw new ConfigError("--exec ${file}: not JSON: ${e.message}")
        }
        ExecConfig c = new ExecConfig(path: file.absolutePath)
        Map top = map(data, 'the config')
        unknown(top, TOP_KEYS, 'the config')
        c.jobName = string(top, 'job_name', 'the config', true)
        if (c.jobName.startsWith('/') || c.jobName.split('/').any { it in ['', '.', '..'] }) {
            throw new ConfigError("job_name '${c.jobName}': a job's full name (folder/name), not a path")
        }
        c.buildEnv = envMap(top.build_env, 'build_env')
        c.globalEnv = envMap(top.global_env, 'global_env')
        c.params = new LinkedHashMap(map(top.params == null ? [:] : top.params, 'params'))
        c.params.each { k, v ->
            if (!(v instanceof CharSequence || v instanceof Boolean || v instanceof Number)) {
                throw new ConfigError("params.${k}: a string, boolean or number, not ${v}")
            }
        }
        c.buildDir = absolute(top, 'build_dir', 'the config')
        def nodes = top.nodes
        if (!(nodes instanceof List) || nodes.isEmpty()) {
            throw new ConfigError('nodes: a non-empty list of nodes')
        }
        nodes.eachWithIndex { raw, int i ->
            String where = "nodes[${i}]"
            Map n = map(raw, where)
            unknown(n, NODE_KEYS, where)
            ExecNode node = new ExecNode(name: string(n, 'name', where, true))
            if (node.name =~ /\s/ || c.nodes.any { it.name == node.name }) {
                throw new ConfigError("${where}.name '${node.name}': node names are unique and have no blanks")
            }
            def labels = n.labels == null ? [] : n.labels
            boolean badLabel = labels instanceof List &&
                labels.any { !(it instanceof CharSequence) || !it || it =~ /[\s&|!<>()"']/ }
            if (!(labels instanceof List) || badLabel) {
                throw new ConfigError("${where}.labels: a list of label names (no blanks or operators)")
            }
            node.labels = labels.collect { it.toString() }
            node.mode = n.mode == null ? 'NORMAL' : n.mode.toString()
            if (!(node.mode in ['NORMAL', 'EXCLUSIVE'])) {
                throw new ConfigError("${where}.mode: NORMAL or EXCLUSIVE, not ${n.mode}")
            }
            def executors = n.executors == null ? 1 : n.executors
            if (!(executors instanceof Integer) || executors < 0) {
                throw new ConfigError("${where}.executors: a number of executors (0 or more)")
            }
            node.executors = (int) executors
            node.root = absolute(n, 'root', where)
            node.processEnv = envMap(n.process_env, "${where}.process_env")
            node.env = envMap(n.env, "${where}.env")
            c.nodes.add(node)
        }
        if (top.checkout != null) {
            Map checkout = map(top.checkout, 'checkout')
            unknown(checkout, ['command'], 'checkout')
            def command = checkout.command
            if (!(command instanceof List) || command.isEmpty() || command.any { !(it instanceof CharSequence) }) {
                throw new ConfigError('checkout.command: a non-empty list of strings (the program and its arguments)')
            }
            c.checkoutCommand = command.collect { it.toString() }
        }
        map(top.credentials == null ? [:] : top.credentials, 'credentials').each { id, raw ->
            String where = "credentials.${id}"
            Map cred = map(raw, where)
            if (cred.type == 'string') {
                unknown(cred, ['type', 'secret'], where)
                string(cred, 'secret', where, false)
            } else if (cred.type == 'usernamePassword') {
                unknown(cred, ['type', 'username', 'password', 'username_secret'], where)
                string(cred, 'username', where, false)
                string(cred, 'password', where, false)
                if (cred.username_secret != null && !(cred.username_secret instanceof Boolean)) {
                    throw new ConfigError("${where}.username_secret: true or false")
                }
            } else {
                throw new ConfigError("${where}.type: string or usernamePassword, not ${cred.type}")
            }
            c.credentials[id.toString()] = cred
        }
        map(top.sonar_installations == null ? [:] : top.sonar_installations, 'sonar_installations').each { name, raw ->
            String where = "sonar_installations.${name}"
            Map inst = map(raw, where)
            unknown(inst, ['url', 'credentials_id', 'server_version'], where)
            ['url', 'credentials_id', 'server_version'].each {
                if (inst[it] != null && !(inst[it] instanceof CharSequence)) {
                    throw new ConfigError("${where}.${it}: a string")
                }
            }
            c.sonar[name.toString()] = inst
        }
        return c
    }

    private static Map map(Object value, String where) {
        if (!(value instanceof Map)) {
            throw new ConfigError("${where}: a JSON object, not ${value}")
        }
        return (Map) value
    }

    private static void unknown(Map m, List known, String where) {
        def extra = m.keySet().findAll { !(it in known) }
        if (extra) {
            throw new ConfigError("${where}: unknown key(s) ${extra.join(', ')}; known: ${known.join(', ')}")
        }
    }

    private static String string(Map m, String key, String where, boolean nonEmpty) {
        def value = m[key]
        if (!(value instanceof CharSequence) || (nonEmpty && !value)) {
            throw new ConfigError("${where}.${key}: a ${nonEmpty ? 'non-empty ' : ''}string")
        }
        return value.toString()
    }

    private static File absolute(Map m, String key, String where) {
        String value = string(m, key, where, true)
        if (!value.startsWith('/')) {
            throw new ConfigError("${where}.${key}: an absolute path, not ${value}")
        }
        return new File(value)
    }

    private static Map<String, String> envMap(Object value, String where) {
        Map m = map(value == null ? [:] : value, where)
        Map<String, String> out = new LinkedHashMap<String, String>()
        m.each { k, v ->
            if (!k || k.toString().contains('=') || !(v instanceof CharSequence)) {
                throw new ConfigError("${where}: maps variable names (without =) to strings; ${k}: ${v}")
            }
            out[k.toString()] = v.toString()
        }
        return out
    }
}

/** --exec: one agent of the config, and what this build holds of it. */
class ExecNode {
    String name
    List<String> labels
    String mode
    int executors
    File root
    Map<String, String> processEnv
    Map<String, String> env
    final Set<Integer> busyExecutors = new TreeSet<Integer>()
    final Set<String> leases = new HashSet<String>()

    Set<String> allLabels() { new LinkedHashSet<String>(labels + [name]) }
}

/** --exec: a timeout block (or timeout option) around what runs now. */
class ExecTimeout {
    long deadline
    boolean fired
}

/** --exec: what the running step sees: its node and workspace, directory, bindings, timeouts. */
class ExecCtx {
    ExecNode node
    File workspace
    File cwd
    Integer executor
    List<List<String>> overrides = []   // withEnv-like bindings, outermost first: [name, value]
    List<String> secrets = []           // values masked in console.log
    List<ExecTimeout> timeouts = []

    ExecCtx copy() {
        new ExecCtx(node: node, workspace: workspace, cwd: cwd, executor: executor,
            overrides: new ArrayList(overrides), secrets: new ArrayList(secrets),
            timeouts: new ArrayList(timeouts))
    }
}

/** --exec: the build's console: console.log (masked, also to stderr) and console-raw.log. */
class ExecConsole {
    final File maskedFile
    final File rawFile
    private final Writer masked
    private final Writer raw

    ExecConsole(File buildDir) {
        maskedFile = new File(buildDir, 'console.log')
        rawFile = new File(buildDir, 'console-raw.log')
        masked = maskedFile.newWriter('UTF-8')
        raw = rawFile.newWriter('UTF-8')
    }

    void line(String text, Collection<String> secrets) {
        raw.write(text + '\n')
        raw.flush()
        String shown = mask(text, secrets)
        masked.write(shown + '\n')
        masked.flush()
        System.err.println(shown)
    }

    void close() {
        masked.close()
        raw.close()
    }

    /** Each secret, and the form `sh -x` prints it in when it holds a quote, becomes ****. */
    static String mask(String text, Collection<String> secrets) {
        List<String> forms = []
        secrets.findAll { it }.each { String s ->
            forms.add(s)
            if (s.contains("'")) {
                forms.add(s.replace("'", "'\\''"))
            }
        }
        forms.unique().sort { -it.length() }.each { text = text.replace(it, '****') }
        return text
    }
}

/** Ant file patterns as Jenkins uses them (comma-separated, ** across directories). */
class AntGlob {
    // Ant's DirectoryScanner default excludes (stash and archiveArtifacts use them by default).
    static final List<String> DEFAULT_EXCLUDES = [
        '**/*~', '**/#*#', '**/.#*', '**/%*%', '**/._*', '**/CVS', '**/CVS/**', '**/.cvsignore',
        '**/SCCS', '**/SCCS/**', '**/vssver.scc', '**/.svn', '**/.svn/**', '**/.DS_Store',
        '**/.git', '**/.git/**', '**/.gitattributes', '**/.gitignore', '**/.gitmodules', '**/.hg',
        '**/.hg/**', '**/.hgignore', '**/.hgsub', '**/.hgsubstate', '**/.hgtags', '**/.bzr',
        '**/.bzr/**', '**/.bzrignore',
    ]

    /** The files under dir (relative, sorted) that an include pattern matches and no exclude does. */
    static List<String> scan(File dir, String includes, String excludes, boolean defaultExcludes) {
        List<List<String>> inc = patterns(includes)
        List<List<String>> exc = patterns(excludes) + (defaultExcludes ? DEFAULT_EXCLUDES.collect { split(it) } : [])
        Set<String> found = new TreeSet<String>()
        if (!dir.isDirectory()) {
            return []
        }
        java.nio.file.Path base = dir.toPath()
        Closure onFile = { java.nio.file.Path file ->
            List<String> segments = base.relativize(file).toString().split('/') as List
            if (inc.any { match(it, 0, segments, 0) } && !exc.any { excludedBy(it, segments) }) {
                found.add(segments.join('/'))
            }
        }
        // Walk only below each pattern's literal leading directories (reports/** walks reports/),
        // following symbolic links as Ant does, without looping.
        Set<java.nio.file.Path> roots = new LinkedHashSet<java.nio.file.Path>()
        inc.each { List<String> p ->
            List<String> fixed = p.takeWhile { !it.contains('*') && !it.contains('?') }
            if (fixed.size() == p.size()) {
                fixed = fixed.dropRight(1)
            }
            roots.add(fixed ? base.resolve(fixed.join('/')) : base)
        }
        def visitor = new java.nio.file.SimpleFileVisitor<java.nio.file.Path>() {
            java.nio.file.FileVisitResult visitFile(java.nio.file.Path file,
                                                    java.nio.file.attribute.BasicFileAttributes attrs) {
                if (attrs.isRegularFile()) {
                    onFile.call(file)
                }
                return java.nio.file.FileVisitResult.CONTINUE
            }

            java.nio.file.FileVisitResult visitFileFailed(java.nio.file.Path file, IOException e) {
                return java.nio.file.FileVisitResult.CONTINUE  // a loop, or gone meanwhile
            }
        }
        roots.findAll { java.nio.file.Files.isDirectory(it) }.each { java.nio.file.Path root ->
            java.nio.file.Files.walkFileTree(root, EnumSet.of(java.nio.file.FileVisitOption.FOLLOW_LINKS),
                Integer.MAX_VALUE, visitor)
        }
        return new ArrayList<String>(found)
    }

    private static boolean excludedBy(List<String> pattern, List<String> segments) {
        // A pattern naming a directory (**/.git) excludes what is inside it, as in Ant.
        (0..<segments.size()).any { int n -> match(pattern, 0, segments.subList(0, n + 1), 0) }
    }

    private static List<List<String>> patterns(String text) {
        if (text == null) {
            return []
        }
        text.split(',').collect { it.trim() }.findAll { it }.collect { split(it) }
    }

    private static List<String> split(String pattern) {
        pattern = pattern.replace('\\', '/')
        if (pattern.endsWith('/')) {
            pattern += '**'
        }
        pattern.split('/').findAll { it }.toList()
    }

    private static final Map<String, java.util.regex.Pattern> SEGMENTS = [:]

    /** One path segment of a pattern: * any characters, ? one. */
    private static java.util.regex.Pattern segment(String glob) {
        java.util.regex.Pattern compiled = SEGMENTS[glob]
        if (compiled == null) {
            compiled = java.util.regex.Pattern.compile(glob.split(/\*/, -1).collect { String piece ->
                piece.split(/\?/, -1).collect { java.util.regex.Pattern.quote(it) }.join('.')
            }.join('.*'))
            SEGMENTS[glob] = compiled
        }
        return compiled
    }

    private static boolean match(List<String> p, int i, List<String> s, int j) {
        if (i == p.size()) {
            return j == s.size()
        }
        if (p[i] == '**') {
            for (int k = j; k <= s.size(); k++) {
                if (match(p, i + 1, s, k)) {
                    return true
                }
            }
            return false
        }
        if (j == s.size()) {
            return false
        }
        return segment(p[i]).matcher(s[j]).matches() && match(p, i + 1, s, j + 1)
    }
}

/** Jenkins' label expressions: a, "quoted", !a, a && b, a || b, a -> b, a <-> b, (...). */
class LabelExpr {
    private final List<String> tokens = []
    private int pos = 0
    private Set<String> labels

    static boolean matches(String expr, Set<String> labels) {
        LabelExpr e = new LabelExpr(expr)
        e.labels = labels
        boolean value = e.iff()
        if (e.pos != e.tokens.size()) {
            throw new IllegalArgumentException("invalid label expression '${expr}'")
        }
        return value
    }

    private LabelExpr(String s) {
        int i = 0
        while (i < s.length()) {
            String c = s.substring(i, i + 1)
            if (c.trim().isEmpty()) {
                i++
            } else if (s.startsWith('<->', i)) {
                tokens.add('<->'); i += 3
            } else if (s.startsWith('&&', i) || s.startsWith('||', i) || s.startsWith('->', i)) {
                tokens.add(s.substring(i, i + 2)); i += 2
            } else if (c in ['!', '(', ')']) {
                tokens.add(c); i++
            } else if (c == '"') {
                int end = s.indexOf('"', i + 1)
                if (end < 0) {
                    throw new IllegalArgumentException("invalid label expression '${s}': unclosed quote")
                }
                tokens.add('=' + s.substring(i + 1, end)); i = end + 1
            } else {
                int j = i
                while (j < s.length() && !(s.substring(j, j + 1) in ['&', '|', '!', '<', '>', '(', ')', '"', "'"]) &&
                       !s.substring(j, j + 1).trim().isEmpty() && !s.startsWith('->', j)) {
                    j++
                }
                if (j == i) {
                    throw new IllegalArgumentException("invalid label expression '${s}'")
                }
                tokens.add('=' + s.substring(i, j)); i = j
            }
        }
    }

    private String peek() { pos < tokens.size() ? tokens[pos] : null }

    private boolean iff() {
        boolean l = implies()
        while (peek() == '<->') { pos++; l = (l == implies()) }
        return l
    }

    private boolean implies() {
        boolean l = or()
        if (peek() == '->') { pos++; boolean r = or(); l = !l || r }
        return l
    }

    private boolean or() {
        boolean l = and()
        while (peek() == '||') { pos++; boolean r = and(); l = l || r }
        return l
    }

    private boolean and() {
        boolean l = not()
        while (peek() == '&&') { pos++; boolean r = not(); l = l && r }
        return l
    }

    private boolean not() {
        if (peek() == '!') { pos++; return !atom() }
        return atom()
    }

    private boolean atom() {
        String t = peek()
        if (t == '(') {
            pos++
            boolean v = iff()
            if (peek() != ')') {
                throw new IllegalArgumentException('invalid label expression: missing )')
            }
            pos++
            return v
        }
        if (t == null || !t.startsWith('=')) {
            throw new IllegalArgumentException("invalid label expression: unexpected ${t ?: 'end'}")
        }
        pos++
        return t.substring(1) in labels
    }
}

/**
 * --exec: runs one process the way the durable-task plugin runs sh: in its own session and
 * process group, its output going to a log file that is followed while it runs, killed (its
 * group, and every process carrying its JENKINS_SERVER_COOKIE) when a deadline passes.
 */
class ExecProcess {
    static final boolean HAS_SETSID = new File('/usr/bin/setsid').canExecute()

    int exitCode
    boolean timedOut
    double seconds

    static ExecProcess run(List<String> command, File cwd, Map<String, String> env, File log,
                           File stdout, Long deadline, Closure onLine) {
        ExecProcess r = new ExecProcess()
        List<String> cmd = HAS_SETSID ? ['/usr/bin/setsid'] + command : command
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(cwd)
        pb.environment().clear()
        pb.environment().putAll(env)
        pb.redirectInput(ProcessBuilder.Redirect.from(new File('/dev/null')))
        if (stdout != null) {
            pb.redirectOutput(stdout)
            pb.redirectError(log)
        } else {
            pb.redirectErrorStream(true)
            pb.redirectOutput(log)
        }
        long start = System.currentTimeMillis()
        Process p = pb.start()
        Tail tail = new Tail(log, onLine)
        while (true) {
            long wait = 100
            if (deadline != null) {
                wait = Math.max(0L, Math.min(wait, deadline - System.currentTimeMillis()))
            }
            if (p.waitFor(wait, java.util.concurrent.TimeUnit.MILLISECONDS)) {
                break
            }
            tail.poll()
            if (deadline != null && System.currentTimeMillis() >= deadline) {
                r.timedOut = true
                kill(p, env.JENKINS_SERVER_COOKIE)
                break
            }
        }
        r.exitCode = p.exitValue()
        r.seconds = Math.round(System.currentTimeMillis() - start) / 1000.0
        tail.poll()
        tail.finish()
        return r
    }

    /** SIGTERM to the process group and the cookie's processes; SIGKILL if they linger. */
    static void kill(Process p, String cookie) {
        long pid = p.pid()
        signal('TERM', pid, cookie)
        if (!p.waitFor(3, java.util.concurrent.TimeUnit.SECONDS) || cookieProcesses(cookie)) {
            signal('KILL', pid, cookie)
        }
        p.destroyForcibly()
        p.waitFor()
    }

    private static void signal(String name, long pid, String cookie) {
        if (HAS_SETSID) {
            new ProcessBuilder('kill', "-${name}".toString(), '--', "-${pid}".toString())
                .redirectErrorStream(true).redirectOutput(new File('/dev/null')).start().waitFor()
        }
        cookieProcesses(cookie).each { long other ->
            new ProcessBuilder('kill', "-${name}".toString(), other.toString())
                .redirectErrorStream(true).redirectOutput(new File('/dev/null')).start().waitFor()
        }
    }

    /** What Jenkins' ProcessTree killer finds: processes whose environment holds the cookie. */
    private static List<Long> cookieProcesses(String cookie) {
        List<Long> found = []
        if (!cookie) {
            return found
        }
        byte[] wanted = "JENKINS_SERVER_COOKIE=${cookie}".getBytes('UTF-8')
        new File('/proc').listFiles().findAll { it.name ==~ /\d+/ }.each { File proc ->
            try {
                String environ = new File(proc, 'environ').getText('ISO-8859-1')
                if (environ.split('\u0000').any { it == new String(wanted, 'ISO-8859-1') }) {
                    found.add(proc.name as long)
                }
            } catch (IOException ignored) {
                // not ours to read, or gone
            }
        }
        return found
    }

    /** Follows a log file, handing on complete lines (and the last, unfinished one at the end). */
    static class Tail {
        final File file
        final Closure onLine
        long offset = 0
        ByteArrayOutputStream partial = new ByteArrayOutputStream()

        Tail(File file, Closure onLine) {
            this.file = file
            this.onLine = onLine
        }

        void poll() {
            if (!file.exists() || file.length() <= offset) {
                return
            }
            RandomAccessFile f = new RandomAccessFile(file, 'r')
            try {
                f.seek(offset)
                byte[] buffer = new byte[(int) Math.min(file.length() - offset, 1 << 20)]
                f.readFully(buffer)
                offset += buffer.length
                int start = 0
                for (int i = 0; i < buffer.length; i++) {
                    if (buffer[i] == (byte) 10) {
                        partial.write(buffer, start, i - start)
                        onLine.call(new String(partial.toByteArray(), 'UTF-8'))
                        partial.reset()
                        start = i + 1
                    }
                }
                partial.write(buffer, start, buffer.length - start)
            } finally {
                f.close()
            }
        }

        void finish() {
            if (partial.size() > 0) {
                onLine.call(new String(partial.toByteArray(), 'UTF-8'))
                partial.reset()
            }
        }
    }
}

/** --exec: env as the running step sees it; `env.X = v` sets a variable of the build. */
class ExecEnvView extends LinkedHashMap {
    Closure onSet

    ExecEnvView(Map env, Closure onSet) {
        super(env)
        this.onSet = onSet
    }

    Object put(Object key, Object value) {
        if (onSet != null) {
            onSet.call(key?.toString(), value)
        }
        return super.put(key, value)
    }
}

class Recorder {
    static final List PIPELINE_SECTIONS = [
        'agent', 'options', 'environment', 'stages', 'post', 'parameters', 'triggers', 'tools',
        'libraries',
    ]
    // matrix is not supported: a Jenkinsfile using it is reported as an unknown section.
    static final List STAGE_SECTIONS = [
        'agent', 'steps', 'post', 'when', 'environment', 'options', 'input', 'tools', 'stages',
        'parallel', 'failFast',
    ]
    static final List STAGE_BODIES = ['steps', 'stages', 'parallel']
    static final List POST_CONDITIONS = [
        'always', 'changed', 'fixed', 'regression', 'aborted', 'success', 'failure', 'unstable',
        'unsuccessful', 'notBuilt', 'cleanup',
    ]
    static final List WHEN_MODIFIERS = ['beforeAgent', 'beforeInput', 'beforeOptions']
    static final List WHEN_NESTING = ['allOf', 'anyOf', 'not']
    static final Map SECTION_FRAMES = [
        steps: 'steps', post: 'post', when: 'when', environment: 'environment', options: 'options',
        triggers: 'triggers', parameters: 'parameters',
    ]
    // triggers { cron(...) }: CronTab's aliases and fields (name, lowest, highest; 0 and 7 are
    // both Sunday). Jenkins' cron has no month or day names.
    static final List CRON_ALIASES = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']
    static final List CRON_FIELDS = [
        ['minute', 0, 59], ['hour', 0, 23], ['day of month', 1, 31], ['month', 1, 12], ['day of week', 0, 7],
    ]
    // parameters { string(...) }: StringParameterDefinition's constructor argument and setters.
    static final Map STRING_PARAMETER_ARGS = [
        name: CharSequence, defaultValue: CharSequence, description: CharSequence, trim: Boolean,
    ]
    static final List AGENT_TYPES = ['docker', 'dockerfile', 'node', 'kubernetes']
    // The order Jenkins runs post conditions in, whatever the order they are written in.
    static final List POST_ORDER = [
        'always', 'changed', 'fixed', 'regression', 'aborted', 'failure', 'success', 'unstable',
        'unsuccessful', 'notBuilt', 'cleanup',
    ]
    static final List NOT_SIMULATED_BLOCKS = ['catchError', 'warnError']
    static final List CREDENTIAL_BINDINGS = ['string', 'usernamePassword', 'usernameColonPassword']
    // --exec: steps that need a node's workspace (hudson.FilePath), block steps that change what
    // the steps inside them see, and options that have no effect here.
    static final List EXEC_NEEDS_WORKSPACE = [
        'sh', 'stash', 'unstash', 'archiveArtifacts', 'junit', 'recordCoverage', 'dir', 'checkout',
        'deleteDir', 'writeFile', 'readFile', 'fileExists', 'pwd', 'isUnix', 'withSonarQubeEnv',
    ]
    static final List EXEC_SCOPES = ['withEnv', 'withCredentials', 'withSonarQubeEnv', 'timeout', 'dir']
    static final List EXEC_NO_EFFECT_OPTIONS = [
        'timeout', 'timestamps', 'disableConcurrentBuilds', 'buildDiscarder', 'skipDefaultCheckout',
        'checkoutToSubdirectory', 'lock', 'ansiColor', 'quietPeriod', 'durabilityHint',
        'preserveStashes', 'disableResume', 'parallelsAlwaysFailFast', 'skipStagesAfterUnstable',
        'overrideIndexTriggers', 'newContainerPerStage',
    ]
    // Steps --exec runs, or that have no effect on a build here (the rest are noted).
    static final List EXEC_KNOWN_STEPS = [
        'echo', 'print', 'println', 'sleep', 'stash', 'unstash', 'archiveArtifacts', 'junit',
        'recordCoverage', 'checkout', 'deleteDir', 'writeFile', 'readFile', 'fileExists', 'pwd',
        'isUnix', 'error', 'unstable', 'script', 'lock', 'timestamps', 'ansiColor', 'retry',
        'parallel', 'catchError', 'warnError', 'withEnv', 'withCredentials', 'withSonarQubeEnv',
        'timeout', 'dir', 'node',
    ]
    static final Object EXEC_NO_VALUE = new Object()
    static final String EXEC_NO_NODE_CONTEXT = 'Attempted to execute a step that requires a node context ' +
        'while \u2018agent none\u2019 was specified. Be sure to specify your own \u2018node { ... }\u2019 blocks ' +
        'when using \u2018agent none\u2019.'
    static final Map EXEC_CREDENTIAL_KINDS = [string: 'Secret text', usernamePassword: 'Username with password']
    static final Map EXEC_COVERAGE_PATTERNS = [
        COBERTURA: '**/cobertura.xml', JACOCO: '**/jacoco.xml,**/jacocoTestReport.xml',
    ]

    private final Script recScript
    private final LinkedList<Frame> recFrames = new LinkedList<Frame>()
    private final Map recGlobals = [
        env: [:].withDefault { '' },
        params: [:].withDefault { '' },
        currentBuild: [:].withDefault { '' },
    ]
    private final Map recVars = [:]
    Map recPipelineMap
    final List recStages = []
    // Per stage (and the pipeline), by identity: what the simulated build runs again. Keys:
    // steps (the steps block), children (nested stages), parallel, when (condition nodes), post.
    private final Map<Map, Map> recBodies = new IdentityHashMap<Map, Map>()
    private final java.util.regex.Pattern recFailPattern
    private final String recTagName
    // The variables the simulated build starts with: --env KEY=VALUE, and TAG_NAME with --tag.
    private final Map recBuildEnv
    // During the simulated build: the env of what runs now (null while recording).
    private Map recSimEnv = null
    private String recBuildResult = 'SUCCESS'
    private final List recNotSimulated = []
    // --exec: the config (null in the other modes), and what the build it runs holds and made.
    private final ExecConfig recExec
    private boolean recExecActive = false
    private ExecCtx recCtx = new ExecCtx()
    private ExecConsole recConsole
    private Map<String, String> recExecBuildVars
    private Map recExecParams
    private final Set<String> recArchived = new TreeSet<String>()
    private final Map<String, List<String>> recStashes = new TreeMap<String, List<String>>()
    private final Map<String, File> recStashDirs = [:]
    private final List recJunit = []
    private final List recCoverage = []
    private boolean recPostFailing = false

    Recorder(Script script, java.util.regex.Pattern failPattern = null, String tagName = null,
             Map buildEnv = [:], ExecConfig exec = null) {
        this.recScript = script
        this.recFailPattern = failPattern
        this.recTagName = tagName
        this.recBuildEnv = new LinkedHashMap(buildEnv)
        if (tagName != null) {
            this.recBuildEnv.TAG_NAME = tagName
        }
        recGlobals.env.putAll(recBuildEnv)
        recFrames.add(new Frame(kind: 'root'))
        this.recExec = exec
        if (exec != null) {
            recExecParams = Collections.unmodifiableMap(new LinkedHashMap(exec.params))
            recExecBuildVars = new LinkedHashMap<String, String>(exec.buildEnv)
            exec.params.each { k, v -> recExecBuildVars[k.toString()] = v.toString() }
            recExecBuildVars.putAll(recBuildEnv)
        }
    }

    // ---- the generic entry points ------------------------------------------------------------

    def methodMissing(String name, Object argsObject) {
        Object[] args = argsObject as Object[]
        if (recIsScriptMethod(name)) {
            // A helper the Jenkinsfile defines itself runs as Jenkins would run it.
            return recScript.invokeMethod(name, args)
        }
        Frame f = recFrames.last
        if (name.startsWith(ShadowedStepRenamer.PREFIX)) {
            name = name.substring(ShadowedStepRenamer.PREFIX.length())
            if (f.kind == 'root') {
                // Plain Groovy outside the DSL: do what it says (stdout goes to stderr here).
                return name == 'sleep' ? null : System.out.invokeMethod(name, args)
            }
        }
        if (name == 'credentials') {
            if (f.kind == 'environment' && f.exec) {
                // --exec: bound when the environment section runs (recExecBindEnvironment).
                return new CredentialRef(args ? args[0]?.toString() : null)
            }
            if (f.kind == 'steps') {
                recStepName(f, name)
            }
            return "credentials(${args ? args[0] : ''})".toString()
        }
        switch (f.kind) {
            case 'root': return recPipeline(name, args)
            case 'pipeline': return recSection(f, name, args, PIPELINE_SECTIONS, 'the pipeline')
            case 'stage': return recSection(f, name, args, STAGE_SECTIONS, "stage '${f.owner.name}'")
            case 'stages': return recStage(f, name, args)
            case 'post': return recPost(f, name, args)
            case 'agent': return recAgentCall(f, name, args)
            case 'triggers': return recTrigger(f, name, args)
            case 'parameters': return recParameter(f, name, args)
            case 'when': return recWhen(f, name, args)
            case 'steps': return recStep(f, name, args)
            case 'expression': return recStep(f, name, args)
            case 'environment':
                return recStep(new Frame(kind: 'steps', owner: f.owner, exec: f.exec, envValue: true), name, args)
            default: return recDirective(f, name, args)
        }
    }

    def propertyMissing(String name) {
        if (recExecActive && name == 'env') {
            return recExecEnvView()
        }
        if (recExecActive && name == 'params') {
            return recExecParams
        }
        if (name == 'env' && recSimEnv != null) {
            return recSimEnv
        }
        if (recGlobals.containsKey(name)) {
            return recGlobals[name]
        }
        if (recVars.containsKey(name)) {
            return recVars[name]
        }
        if (recScript.binding.hasVariable(name)) {
            return recScript.binding.getVariable(name)
        }
        Frame f = recFrames.last
        if (f.kind == 'expression' || (f.kind == 'environment' && f.exec)) {
            // Jenkins resolves a bare name to an environment variable, or fails.
            Map env = recExecActive ? recExecEnvView() : recSimEnv
            if (env.containsKey(name)) {
                return env[name]
            }
            throw new MissingPropertyException("No such property: ${name}".toString(), name, null)
        }
        if (f.kind in ['root', 'pipeline', 'stages', 'stage', 'post'] && !(name in ['any', 'none'])) {
            throw new StubError("unknown name `${name}` in ${recDescribe(f)}")
        }
        return new Symbol(name)
    }

    def propertyMissing(String name, Object value) {
        Frame f = recFrames.last
        if (f.kind == 'environment' && f.exec) {
            recExecBindEnvironment(name, value)
        } else if (f.kind == 'environment') {
            String text = value?.toString()
            f.owner.environment[name] = text
            recGlobals.env[name] = text
        } else if (f.kind in ['steps', 'directive', 'expression']) {
            recVars[name] = value
        } else {
            throw new StubError("assignment to `${name}` in ${recDescribe(f)}")
        }
    }

    // ---- the declarative structure -----------------------------------------------------------

    private recPipeline(String name, Object[] args) {
        if (name != 'pipeline') {
            throw new StubError("`${name}` at the top level: a declarative Jenkinsfile is one pipeline { } block")
        }
        if (recPipelineMap != null) {
            throw new StubError('a second pipeline { } block')
        }
        recPipelineMap = recNewOwner([:]) + [triggers: [], parameters: []]
        Frame f = new Frame(kind: 'pipeline', owner: recPipelineMap)
        recRun(recBlock(name, args), f)
        ['agent', 'stages'].each {
            if (!(it in f.sections)) {
                throw new StubError("the pipeline has no ${it} section")
            }
        }
        return new ChainGuard(name)
    }

    private recSection(Frame f, String name, Object[] args, List allowed, String where) {
        if (!(name in allowed)) {
            throw new StubError("unknown section `${name}` in ${where}; expected one of ${allowed.join(', ')}")
        }
        if (!f.sections.add(name)) {
            throw new StubError("a second `${name}` section in ${where}")
        }
        Map target = f.owner
        if (name == 'agent') {
            recAgent(target, args)
        } else if (name in ['stages', 'parallel']) {
            Map parent = target.is(recPipelineMap) ? null : target
            recBodiesOf(target).parallel = name == 'parallel'
            int before = recStages.size()
            recRun(recBlock(name, args), new Frame(kind: 'stages', owner: target, parentStage: parent))
            if (recStages.size() == before) {
                throw new StubError("no stage in the ${name} section of ${where}")
            }
        } else if (name != 'failFast') {
            Closure body = recBlock(name, args)
            Frame frame = new Frame(kind: SECTION_FRAMES[name] ?: 'directive', owner: target)
            if (name == 'when') {
                target.when = true
                frame.conds = recBodiesOf(target).when = []
            } else if (name == 'steps') {
                recBodiesOf(target).steps = body
            } else if (name == 'environment') {
                recBodiesOf(target).environment = body
            }
            recRun(body, frame)
        }
        return new ChainGuard(name)
    }

    private recStage(Frame f, String name, Object[] args) {
        if (name != 'stage') {
            throw new StubError("`${name}` in a stages block, which holds only stage('name') { ... } blocks")
        }
        if (args.length != 2 || !(args[0] instanceof CharSequence) || !(args[1] instanceof Closure)) {
            throw new StubError("a stage is written stage('name') { ... }")
        }
        String stageName = args[0].toString()
        if (recStages.any { it.name == stageName }) {
            throw new StubError("two stages are named '${stageName}'")
        }
        Map stage = recNewOwner([name: stageName, parent: f.parentStage?.name])
        stage.putAll([
            when: false, when_conditions: [], status: null, skip_reason: null, when_result: null,
            error: null,
        ])
        recStages.add(stage)
        recBodiesOf(f.owner).children.add(stage)
        Frame frame = new Frame(kind: 'stage', owner: stage)
        recRun((Closure) args[1], frame)
        def bodies = STAGE_BODIES.findAll { it in frame.sections }
        if (bodies.size() != 1) {
            throw new StubError("stage '${stageName}' needs exactly one of ${STAGE_BODIES.join(', ')}; it has ${bodies ?: 'none'}")
        }
        return new ChainGuard(name)
    }

    private recAgent(Map owner, Object[] args) {
        if (args.length == 1 && args[0] instanceof Symbol && args[0].name in ['any', 'none']) {
            owner.agent = args[0].name
        } else if (args.length == 1 && args[0] instanceof Closure) {
            // --exec evaluates it again when the stage starts (a label may be a GString of env).
            recBodiesOf(owner).agent = args[0]
            recRun((Closure) args[0], new Frame(kind: 'agent', owner: owner))
            if (owner.agent == null) {
                throw new StubError('agent { } names no agent (label, docker, dockerfile, node, kubernetes)')
            }
        } else {
            throw new StubError('agent takes any, none or a block: agent { label "..." }')
        }
    }

    private recAgentCall(Frame f, String name, Object[] args) {
        Map owner = f.owner
        if (name == 'label') {
            if (args.length != 1 || !(args[0] instanceof CharSequence)) {
                throw new StubError("label takes one string: label 'gpu'")
            }
            owner.agent = owner.agent ?: 'label'
            owner.agent_label = args[0].toString()
        } else if (name in AGENT_TYPES) {
            if (owner.agent != null) {
                throw new StubError("agent `${name}` inside agent `${owner.agent}`")
            }
            owner.agent = name
            args.findAll { it instanceof Closure }.each { recRun((Closure) it, f) }
        } else if (owner.agent == null) {
            throw new StubError("unknown agent type `${name}`")
        }
        // Other names (image, args, customWorkspace, reuseNode, ...) are options of the type.
        return new ChainGuard(name)
    }

    private recWhen(Frame f, String name, Object[] args) {
        if (name in WHEN_MODIFIERS) {
            recBodiesOf(f.owner).whenModifiers[name] = args.length > 0 ? args[0] as boolean : true
            return new ChainGuard(name)
        }
        f.owner.when_conditions.add(name)
        Map node = [name: name, args: args, children: []]
        f.conds.add(node)
        if (name in WHEN_NESTING) {
            recRun(recBlock(name, args), new Frame(kind: 'when', owner: f.owner, conds: node.children))
        } else if (name == 'expression') {
            // Groovy Jenkins evaluates at run time: recorded here, run by the simulated build.
            recBlock(name, args)
        }
        return new ChainGuard(name)
    }

    private recPost(Frame f, String name, Object[] args) {
        if (!(name in POST_CONDITIONS)) {
            throw new StubError("unknown post condition `${name}`; expected one of ${POST_CONDITIONS.join(', ')}")
        }
        if (!f.sections.add(name)) {
            throw new StubError("a second `${name}` in post")
        }
        List names = []
        f.owner.post[name] = names
        Closure body = recBlock(name, args)
        recBodiesOf(f.owner).post[name] = body
        recRun(body, new Frame(kind: 'steps', owner: f.owner, postSteps: names))
        return new ChainGuard(name)
    }

    private recDirective(Frame f, String name, Object[] args) {
        List<List> recordedIn = []
        if (f.kind == 'options') {
            recUnrecord(args)
            f.owner.options.add(name)
            recBodiesOf(f.owner).options[name] = args
            recordedIn.add(f.owner.options)
        }
        args.findAll { it instanceof Closure }.each { recRun((Closure) it, f) }
        return new ChainGuard(name, recordedIn)
    }

    // ---- triggers { } and parameters { }: what the job gets, checked as Jenkins checks it --------

    private recTrigger(Frame f, String name, Object[] args) {
        if (name != 'cron') {
            throw new StubError("trigger `${name}` is not modelled by the stub (it knows cron)")
        }
        Map named = args.length == 1 && args[0] instanceof Map ? (Map) args[0] : null
        def spec = named != null ? named.spec : (args.length == 1 ? args[0] : null)
        if (!(spec instanceof CharSequence) || (named != null && named.keySet() != ['spec'] as Set)) {
            throw new StubError("cron takes one spec: cron('H 2 * * *') or cron(spec: '...')")
        }
        String problem = recCronProblem(spec.toString())
        if (problem != null) {
            // TimerTrigger's constructor parses the spec (CronTabList.create) and throws.
            throw new StubError("cron('${spec}') is not a valid schedule: ${problem}")
        }
        f.owner.triggers.add([cron: spec.toString()])
        return new ChainGuard(name)
    }

    /** Why ``spec`` is no schedule CronTabList accepts, or null: lines (# comments, a first
     *  TZ= line) of five fields or an alias; each field a comma list of terms. */
    static String recCronProblem(String spec) {
        List<String> lines = spec.readLines()*.trim().findAll { it && !it.startsWith('#') }
        if (lines && lines[0].startsWith('TZ=')) {
            lines = lines.drop(1)
        }
        if (!lines) {
            return 'it has no schedule line'
        }
        for (String line : lines) {
            if (line.startsWith('@')) {
                if (!(line in CRON_ALIASES)) {
                    return "unknown alias ${line} (one of ${CRON_ALIASES.join(', ')})"
                }
                continue
            }
            List<String> fields = line.split(/\s+/) as List
            if (fields.size() != 5) {
                return "'${line}' has ${fields.size()} fields, not 5 (minute hour day-of-month month day-of-week)"
            }
            for (int i = 0; i < 5; i++) {
                def (String label, int lowest, int highest) = CRON_FIELDS[i]
                for (String term : fields[i].split(',', -1)) {
                    String problem = recCronTermProblem(term, lowest, highest)
                    if (problem != null) {
                        return "${label} '${term}': ${problem}"
                    }
                }
            }
        }
        return null
    }

    /** CrontabParser's term: N, N-M, *, H, H(N-M), each but N with an optional /STEP. */
    static String recCronTermProblem(String term, int lowest, int highest) {
        def m = term =~ /^(?:(\*)|(H)|H\((\d+)-(\d+)\)|(\d+)-(\d+)|(\d+))(?:\/(\d+))?$/
        if (!m.matches()) {
            return 'not a term (N, N-M, *, H or H(N-M), with an optional /STEP after all but N)'
        }
        if (m.group(7) != null && m.group(8) != null) {
            return 'a single value takes no /STEP'
        }
        List<Integer> numbers = (3..7).collect { m.group(it) }.findAll { it != null }.collect { it as int }
        if (numbers.any { it < lowest || it > highest }) {
            return "out of range: ${lowest}-${highest}"
        }
        if (numbers.size() == 2 && numbers[0] > numbers[1]) {
            return 'the start of the range is after its end'
        }
        if (m.group(8) != null && (m.group(8) as int) < 1) {
            return 'the step must be positive'
        }
        return null
    }

    private recParameter(Frame f, String name, Object[] args) {
        if (name != 'string') {
            throw new StubError("parameter type `${name}` is not modelled by the stub (it knows string)")
        }
        if (args.length != 1 || !(args[0] instanceof Map)) {
            throw new StubError("a string parameter is written string(name: 'X', defaultValue: '', " +
                "description: '...', trim: true)")
        }
        Map given = (Map) args[0]
        def unknown = given.keySet().findAll { !STRING_PARAMETER_ARGS.containsKey(it) }
        if (unknown) {
            throw new StubError("Invalid parameter \"${unknown[0]}\" of string: it takes " +
                STRING_PARAMETER_ARGS.keySet().join(', '))
        }
        given.each { key, value ->
            if (value != null && !STRING_PARAMETER_ARGS[key].isInstance(value)) {
                throw new StubError("string parameter ${key}: ${value} is not a ${STRING_PARAMETER_ARGS[key].simpleName}")
            }
        }
        if (!given.name?.toString()) {
            throw new StubError('Missing required parameter: "name" of string')
        }
        f.owner.parameters.add([
            type: 'string', name: given.name.toString(),
            defaultValue: given.defaultValue == null ? '' : given.defaultValue.toString(),
            description: given.description?.toString(), trim: given.trim == true,
        ])
        return new ChainGuard(name)
    }

    private recStep(Frame f, String name, Object[] args) {
        recUnrecord(args)
        List<List> recordedIn = []
        def result
        if (name == 'sh') {
            Map options = args.length > 0 && args[0] instanceof Map ? (Map) args[0] : [:]
            def text = options ? options.script : (args.length > 0 ? args[0] : null)
            if (!(text instanceof CharSequence)) {
                throw new StubError("sh needs a script: sh 'command' or sh script: 'command'")
            }
            String script = text.toString()
            (f.exec ? f.owner.ran_sh : f.owner.sh).add(script)
            if (f.postSteps != null) {
                f.postSteps.add(name)
            }
            result = options.returnStdout ? '' : options.returnStatus ? 0 : null
            if (f.exec && recExec != null) {
                result = recExecSh(f, script, options)
            } else if (f.exec && recFailPattern != null && recFailPattern.matcher(script).find()) {
                if (!options.returnStatus) {
                    throw new StepFailure("sh '${script}' failed")
                }
                result = 1
            }
        } else if (name in CREDENTIAL_BINDINGS) {
            // An argument of withCredentials, which takes it off the recorded steps again.
            return new CredentialBinding(name, recStepName(f, name), args)
        } else {
            recordedIn = recStepName(f, name)
            if (f.exec && recExec != null) {
                def value = recExecStep(f, name, args)
                if (!value.is(EXEC_NO_VALUE)) {
                    result = value
                }
            }
            if (f.exec && name == 'error') {
                throw new StepFailure("error(${args ? args[0] : ''})")
            }
            if (f.exec && name == 'unstable') {
                recNotSimulated.add("the unstable step in ${recWhere(f)}".toString())
            }
        }
        // Block steps (lock, timeout, dir, script, ...) and parallel's branches run in place.
        List<Closure> bodies = []
        args.each { arg ->
            if (arg instanceof Closure) {
                bodies.add((Closure) arg)
            } else if (arg instanceof Map) {
                bodies.addAll(arg.values().findAll { it instanceof Closure })
            }
        }
        if (f.exec && bodies) {
            recExecBlock(f, name, args, bodies)
        } else {
            bodies.each { recRun(it, new Frame(kind: 'steps', owner: f.owner, postSteps: f.postSteps)) }
        }
        return result != null ? result : new ChainGuard(name, recordedIn)
    }

    /** The bodies of a block step in the simulated build: a failure leaves the block. */
    private void recExecBlock(Frame f, String name, Object[] args, List<Closure> bodies) {
        Frame inner = new Frame(kind: 'steps', owner: f.owner, postSteps: f.postSteps, exec: true)
        if (recExec != null && name == 'node') {
            String label = args.length > 0 && args[0] instanceof CharSequence ? args[0].toString() : null
            recExecOnNode(label, null) { bodies.each { recRun(it, inner) } }
            return
        }
        if (recExec != null && name in EXEC_SCOPES) {
            ExecCtx saved = recCtx
            recCtx = saved.copy()
            try {
                recExecEnterScope(name, args)
                bodies.each { recRun(it, inner) }
            } finally {
                recCtx = saved
            }
            return
        }
        if (name == 'retry') {
            def count = args.length > 0 && args[0] instanceof Map ? args[0].count : args[0]
            int attempts = count instanceof Number ? Math.max(1, ((Number) count).intValue()) : 1
            for (int attempt = 1; ; attempt++) {
                try {
                    bodies.each { recRun(it, inner) }
                    return
                } catch (StepFailure e) {
                    if (attempt >= attempts || e instanceof StepTimeout) {
                        throw e
                    }
                }
            }
        }
        if (name == 'parallel') {
            // Scripted parallel: every branch runs to its end, then the first failure is the step's.
            StepFailure first = null
            bodies.each { Closure branch ->
                StepFailure e = recExecCatching(branch, inner)
                first = first ?: e
            }
            if (first != null) {
                throw first
            }
            return
        }
        try {
            bodies.each { recRun(it, inner) }
        } catch (StepFailure e) {
            if (name in NOT_SIMULATED_BLOCKS) {
                String note = "${name} in ${recWhere(f)}: not simulated, so ${e.message} went through it"
                recNotSimulated.add(note)
            }
            throw e
        }
    }

    // ---- helpers -----------------------------------------------------------------------------

    private List<List> recStepName(Frame f, String name) {
        List<List> lists = [f.exec ? f.owner.ran_steps : f.owner.steps]
        if (f.postSteps != null) {
            lists.add(f.postSteps)
        }
        lists.each { it.add(name) }
        return lists
    }

    /**
     * buildDiscarder(logRotator(...)): logRotator is an argument, not an option of its own; so are
     * the bindings in withCredentials([string(...), usernamePassword(...)]).
     */
    private void recUnrecord(Object[] args) {
        def nested = args.toList() + args.findAll { it instanceof Map }.collectMany { it.values() as List }
        nested = nested + nested.findAll { it instanceof List }.collectMany { it as List }
        nested.findAll { it instanceof ChainGuard }.each { ChainGuard guard ->
            guard.recordedIn.each { List names ->
                int at = names.lastIndexOf(guard.call)
                if (at >= 0) {
                    names.remove((int) at)
                }
            }
        }
    }

    private Closure recBlock(String name, Object[] args) {
        if (args.length != 1 || !(args[0] instanceof Closure)) {
            throw new StubError("`${name}` takes one block: ${name} { ... }")
        }
        return (Closure) args[0]
    }

    private Object recRun(Closure body, Frame frame) {
        recFrames.add(frame)
        try {
            Closure c = body.rehydrate(this, body.owner, body.thisObject)
            c.resolveStrategy = Closure.DELEGATE_FIRST
            return c.call()
        } catch (StubError | StepFailure e) {
            throw e
        } catch (Exception | AssertionError e) {
            if (!frame.exec) {
                throw e
            }
            // In the simulated build Jenkins would fail the step, as a failing sh does.
            throw new StepFailure(e.toString())
        } finally {
            recFrames.removeLast()
        }
    }

    private Map recNewOwner(Map head) {
        head + [
            agent: null, agent_label: null, sh: [], steps: [], post: [:], environment: [:],
            options: [], ran_sh: [], ran_steps: [], ran_post: [:],
        ]
    }

    private Map recBodiesOf(Map owner) {
        Map bodies = recBodies.get(owner)
        if (bodies == null) {
            bodies = [
                steps: null, children: [], parallel: false, when: null, post: [:],
                // for --exec: the agent and environment blocks, options' arguments, when's modifiers
                agent: null, environment: null, options: [:], whenModifiers: [:],
            ]
            recBodies.put(owner, bodies)
        }
        return bodies
    }

    private String recWhere(Frame f) {
        recWhereOwner(f.owner)
    }

    private String recWhereOwner(Map owner) {
        owner.is(recPipelineMap) ? 'the pipeline' : "stage '${owner.name}'".toString()
    }

    private boolean recIsScriptMethod(String name) {
        !(name in ['run', 'main']) && recScript.getClass().declaredMethods.any { !it.synthetic && it.name == name }
    }

    private static String recDescribe(Frame f) {
        f.owner?.name ? "${f.kind} of stage '${f.owner.name}'" : (f.kind == 'root' ? 'the top level' : f.kind)
    }

    Map recResult() {
        Map result = recPipelineMap + [
            result: recBuildResult,
            simulation: [
                fail: recFailPattern?.pattern(), tag: recTagName,
                env: recBuildEnv.findAll { it.key != 'TAG_NAME' || recTagName == null },
            ],
            not_simulated: recNotSimulated,
            stages: recStages,
        ]
        if (recExec != null) {
            result.simulation.exec = recExec.path
            result.archived = new ArrayList(recArchived)
            result.stashes = recStashes
            result.junit = recJunit
            result.coverage = recCoverage
            result.console_log = recConsole.maskedFile.path
            result.console_raw_log = recConsole.rawFile.path
        }
        return result
    }

    // ---- --exec: the build, run for real ------------------------------------------------------

    /** Runs the recorded pipeline on the config's nodes, the way ModelInterpreter runs it. */
    private void recExecSimulate() {
        recExec.buildDir.mkdirs()
        recConsole = new ExecConsole(recExec.buildDir)
        recExecActive = true
        ([recPipelineMap] + recStages).each { Map owner ->
            owner.putAll([node: null, node_label: null, workspace: null, checkout: null, sh_results: []])
        }
        recPipelineMap.error = null
        Map root = recPipelineMap
        StepFailure first = null
        boolean postRun = false
        try {
            // As in Jenkins: the agent, then the environment, then the options' wrappers (timeout)
            // around the stages and the pipeline's post.
            recExecInAgent(root, false) {
                recExecEnvironment(root)
                recExecWrappers(root) {
                    recBodiesOf(root).children.each { Map stage ->
                        StepFailure e = recExecStage(stage, first, null)
                        first = first ?: e
                    }
                    postRun = true
                    recExecRootPost()
                }
            }
        } catch (StepFailure e) {
            recExecFailed(root, e)
        } finally {
            if (!postRun) {
                recExecRootPost()
            }
        }
        recStages.findAll { it.status == null }.each { Map stage ->
            stage.status = 'skipped'
            stage.skip_reason = 'failure'
        }
        recExecLog("Finished: ${recBuildResult}")
        recExecActive = false
        recConsole.close()
    }

    private void recExecRootPost() {
        ExecCtx saved = recCtx
        recCtx = saved.copy()
        recCtx.overrides.add(['STAGE_NAME', 'Declarative: Post Actions'])
        try {
            StepFailure e = recSimPost(recPipelineMap, null, false)
            if (e != null && recPipelineMap.error == null) {
                recExecFailed(recPipelineMap, e)
            }
        } finally {
            recCtx = saved
        }
    }

    private void recExecFailed(Map owner, StepFailure e) {
        owner.error = owner.error ?: e.message
        recBuildResult = 'FAILURE'
        recExecLog("ERROR: ${e.message}")
        if (e instanceof StepTimeout) {
            recNotSimulated.add(("a timeout in ${recWhereOwner(owner)}: Jenkins ends the build ABORTED " +
                '(post runs aborted, not failure); recorded as FAILURE').toString())
        }
    }

    /** One stage: options, when, agent (and its checkout), environment, steps and post. */
    private StepFailure recExecStage(Map stage, StepFailure earlier, String skipReason) {
        Map bodies = recBodiesOf(stage)
        if (skipReason == null && earlier != null) {
            skipReason = 'failure'
        }
        if (skipReason != null) {
            stage.status = 'skipped'
            stage.skip_reason = skipReason
            bodies.children.each { recExecStage(it, null, skipReason) }
            return null
        }
        ExecCtx saved = recCtx
        recCtx = saved.copy()
        recCtx.overrides.add(['STAGE_NAME', stage.name])
        recExecLog("[Pipeline] { (${stage.name})")
        Map modifiers = bodies.whenModifiers
        boolean whenDone = bodies.when == null
        boolean whenFalse = false
        boolean ran = false
        StepFailure error = null
        Closure evaluateWhen = {
            whenDone = true
            whenFalse = !recExecWhen(stage, bodies.when)
        }
        try {
            if (!whenDone && modifiers.beforeOptions) {
                evaluateWhen()
            }
            if (!whenFalse) {
                recExecWrappers(stage) {
                    if (!whenDone && (modifiers.beforeInput || modifiers.beforeAgent || bodies.parallel)) {
                        evaluateWhen()
                    }
                    if (!whenFalse) {
                        recExecInAgent(stage, true) {
                            stage.node = recCtx.node?.name
                            stage.workspace = recCtx.workspace?.path
                            if (!whenDone) {
                                evaluateWhen()
                            }
                            if (!whenFalse) {
                                recExecEnvironment(stage)
                                ran = true
                                error = recExecStageBody(stage, bodies)
                            }
                        }
                    }
                }
            }
        } catch (StepFailure e) {
            error = error ?: e
        } finally {
            recCtx = saved
        }
        if (whenFalse) {
            stage.status = 'skipped'
            stage.skip_reason = 'when'
            bodies.children.each { recExecStage(it, null, 'when') }
            return null
        }
        if (!ran) {
            bodies.children.findAll { it.status == null }.each { recExecStage(it, null, 'failure') }
        }
        stage.status = error == null ? 'passed' : 'failed'
        stage.error = error?.message
        if (error != null) {
            recExecFailed(stage, error)
        }
        return error
    }

    private StepFailure recExecStageBody(Map stage, Map bodies) {
        StepFailure error = null
        if (bodies.steps != null) {
            error = recExecCatching(bodies.steps, new Frame(kind: 'steps', owner: stage, exec: true))
        } else {
            // Sequential nested stages stop at a failure; parallel ones all start (one by one here).
            bodies.children.each { Map child ->
                StepFailure e = recExecStage(child, bodies.parallel ? null : error, null)
                error = error ?: e
            }
        }
        return recSimPost(stage, error, true)
    }

    private boolean recExecWhen(Map stage, List conditions) {
        Boolean passed
        try {
            passed = recWhenAll(stage, conditions)
        } catch (StepFailure e) {
            stage.when_result = 'error'
            throw new StepFailure("when expression failed: ${e.message}".toString())
        }
        stage.when_result = passed == null ? 'unknown' : passed
        return passed == null || passed
    }

    /** The options that wrap a stage (or the pipeline): only timeout has an effect here. */
    private Object recExecWrappers(Map owner, Closure body) {
        Map options = recBodiesOf(owner).options
        // (an option's arguments, such as logRotator in buildDiscarder, are not options)
        options.keySet().findAll { it in owner.options && !(it in EXEC_NO_EFFECT_OPTIONS) }.each {
            recNotSimulated.add("option ${it} of ${recWhereOwner(owner)}: not simulated by --exec".toString())
        }
        if (options.timeout == null) {
            return body.call()
        }
        ExecCtx saved = recCtx
        recCtx = saved.copy()
        try {
            recExecEnterScope('timeout', (Object[]) options.timeout)
            return body.call()
        } finally {
            recCtx = saved
        }
    }

    /** The declarative agent of a stage (or the pipeline): a node, its workspace, the checkout. */
    private Object recExecInAgent(Map owner, boolean isStage, Closure body) {
        if (owner.agent == null || owner.agent == 'none') {
            return body.call()
        }
        String type = owner.agent
        String label = owner.agent_label
        Closure agentBody = recBodiesOf(owner).agent
        if (agentBody != null) {
            // Evaluated now, with the build's env, as Jenkins does when the stage starts.
            Map evaluated = [agent: null, agent_label: null]
            recRun(agentBody, new Frame(kind: 'agent', owner: evaluated, exec: true))
            type = evaluated.agent
            label = evaluated.agent_label
        }
        if (!(type in ['any', 'label', 'node'])) {
            recNotSimulated.add("agent ${type} of ${recWhereOwner(owner)}: --exec runs no containers".toString())
            throw new StepFailure("agent ${type}: not simulated by --exec (it runs no containers)".toString())
        }
        owner.node_label = type == 'any' ? null : label
        return recExecOnNode(owner.node_label, owner) {
            recExecDeclarativeCheckout(owner, isStage)
            body.call()
        }
    }

    /** node(label) { ... }: an executor of a matching node and a workspace on it, for the body. */
    private Object recExecOnNode(String label, Map owner, Closure body) {
        boolean any = label == null || label.trim().isEmpty()
        List<ExecNode> matching
        try {
            matching = recExec.nodes.findAll { ExecNode n ->
                n.executors > 0 && (any ? n.mode == 'NORMAL' : LabelExpr.matches(label, n.allLabels()))
            }
        } catch (IllegalArgumentException e) {
            throw new StepFailure(e.message)
        }
        if (!matching) {
            String why = any ? 'agent any: no node takes any job (each has 0 executors or is EXCLUSIVE)' :
                "no node has label '${label}'"
            String queue = any ? '' : " (There are no nodes with the label \u2018${label}\u2019)"
            throw new StepFailure("${why}: Jenkins would wait in the queue forever${queue}".toString())
        }
        ExecNode node = matching.find { it.busyExecutors.size() < it.executors }
        if (node == null) {
            throw new StepFailure(("every node for ${any ? 'agent any' : "label '${label}'"} (${matching*.name.join(', ')}) " +
                'has all its executors held by this build: Jenkins would wait for one forever').toString())
        }
        int executor = (0..<node.executors).find { !(it in node.busyExecutors) }
        node.busyExecutors.add(executor)
        // Slave.getWorkspaceFor and WorkspaceList.allocate: <root>/workspace/<job>, @2 when in use.
        File base = new File(node.root, "workspace/${recExec.jobName}")
        File workspace = base
        for (int n = 2; workspace.path in node.leases; n++) {
            workspace = new File(base.parentFile, "${base.name}@${n}")
        }
        node.leases.add(workspace.path)
        ExecCtx saved = recCtx
        recCtx = saved.copy()
        recCtx.node = node
        recCtx.executor = executor
        recCtx.workspace = workspace
        recCtx.cwd = workspace
        if (owner != null) {
            owner.node = node.name
            owner.workspace = workspace.path
        }
        recExecLog("Running on ${node.name} in ${workspace.path}")
        try {
            return body.call()
        } finally {
            node.busyExecutors.remove(executor)
            node.leases.remove(workspace.path)
            recCtx = saved
        }
    }

    private void recExecDeclarativeCheckout(Map owner, boolean isStage) {
        Map options = new LinkedHashMap(recBodiesOf(recPipelineMap).options)
        if (isStage) {
            options.putAll(recBodiesOf(owner).options)
        }
        Object[] skip = (Object[]) options.skipDefaultCheckout
        if (recExec.checkoutCommand == null || (skip != null && (skip.length == 0 || skip[0] == null || skip[0]))) {
            return  // a job without SCM (no checkout command) does no declarative checkout either
        }
        File dir = recCtx.cwd
        Object[] subdirectory = (Object[]) options.checkoutToSubdirectory
        if (subdirectory != null && subdirectory.length > 0 && subdirectory[0]) {
            dir = new File(dir, subdirectory[0].toString())
        }
        recExecCheckout(owner, dir)
    }

    /** checkout scm: the config's command, in dir, with the node's process env. */
    private void recExecCheckout(Map owner, File dir) {
        if (recExec.checkoutCommand == null) {
            throw new StepFailure('checkout scm: this job has no SCM (the config has no checkout.command)')
        }
        recExecLog('[Pipeline] checkout')
        dir.mkdirs()
        Map<String, String> env = new LinkedHashMap<String, String>(recCtx.node.processEnv)
        env.WORKSPACE = recCtx.workspace.path
        env.NODE_NAME = recCtx.node.name
        File log = File.createTempFile('checkout-', '.log', recExec.buildDir)
        ExecProcess r
        try {
            List<String> secrets = new ArrayList<String>(recCtx.secrets)
            r = ExecProcess.run(recExec.checkoutCommand, dir, env, log, null, recExecDeadline()) { String line ->
                recConsole.line(line, secrets)
            }
        } catch (IOException e) {
            throw new StepFailure("checkout scm failed: ${e.message}".toString())
        } finally {
            log.delete()
        }
        Map result = [exit_code: r.exitCode, seconds: r.seconds]
        if (owner != null) {
            owner.checkout = result
        }
        if (r.timedOut) {
            recExecFireTimeouts()
            throw new StepTimeout()
        }
        if (r.exitCode != 0) {
            throw new StepFailure("checkout scm failed: ${recExec.checkoutCommand[0]} exited with code ${r.exitCode}".toString())
        }
    }

    /** A stage's (or the pipeline's) environment section, evaluated now: credentials bound. */
    private void recExecEnvironment(Map owner) {
        Closure body = recBodiesOf(owner).environment
        if (body != null) {
            recRun(body, new Frame(kind: 'environment', owner: owner, exec: true))
        }
    }

    private void recExecBindEnvironment(String name, Object value) {
        if (!(value instanceof CredentialRef)) {
            // withEnv(["NAME=value"]): a null value reads "null", as in Jenkins.
            recCtx.overrides.add([name, String.valueOf(value)])
            return
        }
        Map cred = recExec.credentials[((CredentialRef) value).id]
        if (cred == null) {
            // CredentialsBindingHandler.forId: the exception's message is the id alone.
            String exception = 'org.jenkinsci.plugins.credentialsbinding.impl.CredentialNotFoundException'
            throw new StepFailure("${exception}: ${((CredentialRef) value).id}".toString())
        }
        if (cred.type == 'string') {
            recExecBind(name, cred.secret, true)
        } else {
            recExecBind(name, "${cred.username}:${cred.password}".toString(), true)
            recExecBind(name + '_USR', cred.username, cred.username_secret == true)
            recExecBind(name + '_PSW', cred.password, true)
        }
    }

    private void recExecBind(String name, String value, boolean secret) {
        recCtx.overrides.add([name, value])
        if (secret && value) {
            recCtx.secrets.add(value)
        }
    }

    /** What a block step changes for the steps inside it (recCtx is already a copy). */
    private void recExecEnterScope(String name, Object[] args) {
        Object first = args.length > 0 ? args[0] : null
        Map options = first instanceof Map ? (Map) first : [:]
        if (name == 'withEnv') {
            def pairs = first instanceof Map ? options.overrides : first
            if (!(pairs instanceof List)) {
                throw new StepFailure('withEnv takes a list of "NAME=value" strings')
            }
            pairs.each { pair ->
                String text = pair.toString()
                int eq = text.indexOf('=')
                if (eq < 1) {
                    throw new StepFailure("withEnv: ${text} is not of the form NAME=value".toString())
                }
                recCtx.overrides.add([text.substring(0, eq), text.substring(eq + 1)])
            }
        } else if (name == 'withCredentials') {
            def bindings = first instanceof Map ? options.bindings : first
            if (!(bindings instanceof List)) {
                throw new StepFailure('withCredentials takes a list of bindings')
            }
            bindings.each { recExecBindCredential(it) }
        } else if (name == 'withSonarQubeEnv') {
            recExecSonar(first instanceof Map ? options : [installationName: first])
        } else if (name == 'timeout') {
            recCtx.timeouts.add(new ExecTimeout(deadline: System.currentTimeMillis() + recExecTimeoutMillis(first)))
        } else if (name == 'dir') {
            def path = first instanceof Map ? options.path : first
            if (!(path instanceof CharSequence)) {
                throw new StepFailure("dir takes a path: dir('sub') { ... }")
            }
            recCtx.cwd = path.toString().startsWith('/') ? new File(path.toString()) : new File(recCtx.cwd, path.toString())
        }
    }

    private void recExecBindCredential(Object binding) {
        if (!(binding instanceof CredentialBinding)) {
            recNotSimulated.add(("withCredentials binding ${binding}: --exec binds string, usernamePassword " +
                'and usernameColonPassword').toString())
            throw new StepFailure("withCredentials: binding ${binding} is not simulated by --exec".toString())
        }
        Map o = ((CredentialBinding) binding).options
        String kind = ((CredentialBinding) binding).call
        String id = o.credentialsId?.toString()
        Map cred = recExec.credentials[id]
        if (cred == null) {
            throw new StepFailure("Could not find credentials entry with ID '${id}'".toString())
        }
        String expected = kind == 'string' ? 'string' : 'usernamePassword'
        if (cred.type != expected) {
            throw new StepFailure(("Credentials '${id}' is of type '${EXEC_CREDENTIAL_KINDS[cred.type]}' " +
                "where '${EXEC_CREDENTIAL_KINDS[expected]}' was expected").toString())
        }
        List<String> variables = kind == 'usernamePassword' ? [o.usernameVariable, o.passwordVariable] : [o.variable]
        if (variables.any { !(it instanceof CharSequence) || !it }) {
            throw new StepFailure("withCredentials: ${kind}(...) names no variable to bind".toString())
        }
        if (kind == 'string') {
            recExecBind(o.variable.toString(), cred.secret, true)
        } else if (kind == 'usernameColonPassword') {
            recExecBind(o.variable.toString(), "${cred.username}:${cred.password}".toString(), true)
        } else {
            recExecBind(o.usernameVariable.toString(), cred.username, cred.username_secret == true)
            recExecBind(o.passwordVariable.toString(), cred.password, true)
        }
    }

    /** withSonarQubeEnv: what SonarBuildWrapper.createVars puts in the environment. */
    private void recExecSonar(Map options) {
        String name = options.installationName ? options.installationName.toString() : null
        Map.Entry<String, Map> found = name == null ? recExec.sonar.entrySet().find { true } :
            recExec.sonar.entrySet().find { it.key == name }
        if (found == null) {
            String tip = 'If you want to reassign jobs to a different SonarQube installation, check the ' +
                'documentation under https://redirect.sonarsource.com/plugins/jenkins.html'
            int count = recExec.sonar.size()
            String message = name == null ?
                "No SonarQube installation assigned for this job. There are ${count} available " +
                    'installations that can be configured.' :
                "SonarQube installation defined in this job (${name}) does not match any configured " +
                    "installation. Number of installations that can be configured: ${count}."
            throw new StepFailure("${message}\n${tip}".toString())
        }
        Map inst = found.value
        recExecLog("Injecting SonarQube environment variables using the configuration: ${found.key}")
        String token = ''
        if (options.credentialsId) {
            Map cred = recExec.credentials[options.credentialsId.toString()]
            if (cred?.type != 'string') {
                throw new StepFailure("Unable to find credential with id '${options.credentialsId}'".toString())
            }
            token = cred.secret
        } else if (inst.credentials_id) {
            // The installation's own credential; missing (or not secret text), the token is empty.
            Map cred = recExec.credentials[inst.credentials_id.toString()]
            token = cred?.type == 'string' ? cred.secret : ''
        }
        String url = recExecExpand((inst.url ?: '').toString(), recExecEffectiveEnv()) ?: 'http://localhost:9000'
        // The plugin asks the server its version (sonar.token from 10.0, sonar.login before, and
        // when it cannot tell); here the config's server_version says it.
        String version = inst.server_version?.toString()
        String major = version?.tokenize('.')?.find { true }
        boolean tokenProperty = url.startsWith('https://sonarcloud.io') ||
            (major != null && major.isInteger() && major.toInteger() >= 10)
        StringBuilder params = new StringBuilder('{ "sonar.host.url" : "').append(recJsonEscape(url)).append('"')
        if (token) {
            params.append(', "').append(tokenProperty ? 'sonar.token' : 'sonar.login').append('" : "')
                .append(recJsonEscape(token)).append('"')
        }
        params.append('}')
        recExecBind('SONAR_CONFIG_NAME', found.key, false)
        recExecBind('SONAR_HOST_URL', url, false)
        recExecBind('SONAR_AUTH_TOKEN', token, true)
        recExecBind('SONAR_MAVEN_GOAL', 'sonar:sonar', false)
        recExecBind('SONAR_EXTRA_PROPS', '', false)
        recExecBind('SONARQUBE_SCANNER_PARAMS', params.toString(), false)
    }

    /** commons-lang3 StringEscapeUtils.escapeJson, which the sonar plugin uses. */
    private static String recJsonEscape(String text) {
        Map<String, String> escapes = ['"': '\\"', '\\': '\\\\', '/': '\\/', '\b': '\\b', '\n': '\\n',
                                       '\t': '\\t', '\f': '\\f', '\r': '\\r']
        StringBuilder out = new StringBuilder()
        for (int i = 0; i < text.length(); i++) {
            String c = text.substring(i, i + 1)
            int code = (int) text.charAt(i)
            if (escapes.containsKey(c)) {
                out.append(escapes[c])
            } else if (code < 32 || code > 0x7f) {
                out.append(String.format('\\u%04X', code))
            } else {
                out.append(c)
            }
        }
        return out.toString()
    }

    private long recExecTimeoutMillis(Object first) {
        def time = first instanceof Map ? first.time : first
        def unit = first instanceof Map && first.unit != null ? first.unit : 'MINUTES'
        if (!(time instanceof Number)) {
            throw new StepFailure("timeout needs a time: timeout(time: 5, unit: 'MINUTES')")
        }
        if (first instanceof Map && first.activity) {
            recNotSimulated.add('timeout(activity: true): enforced as a plain timeout')
        }
        try {
            return java.util.concurrent.TimeUnit.valueOf(unit.toString()).toMillis(((Number) time).longValue())
        } catch (IllegalArgumentException e) {
            throw new StepFailure("timeout: unknown unit ${unit}".toString())
        }
    }

    /** The nearest deadline of the timeouts around what runs now (null: none). */
    private Long recExecDeadline() {
        List<Long> deadlines = recCtx.timeouts.findAll { !it.fired }.collect { it.deadline }
        deadlines ? deadlines.min() : null
    }

    private void recExecCheckTimeout() {
        Long deadline = recExecDeadline()
        if (deadline != null && System.currentTimeMillis() >= deadline) {
            recExecFireTimeouts()
            throw new StepTimeout()
        }
    }

    /** Marks the timeouts whose deadline passed; what runs after them (post) runs without them. */
    private void recExecFireTimeouts() {
        recCtx.timeouts.findAll { !it.fired && System.currentTimeMillis() >= it.deadline }.each { it.fired = true }
        recExecLog('Cancelling nested steps due to timeout')
    }

    /** The step's failure outside a node; in declarative steps and post, with its rewording. */
    private StepFailure recExecNoNode(Frame f, String step) {
        String cause = 'Required context class hudson.FilePath is missing\n' +
            "Perhaps you forgot to surround the ${step} step with a step that provides this, such as: node"
        if (f.kind == 'steps' && !f.envValue) {
            return new StepFailure("${EXEC_NO_NODE_CONTEXT}\n(the ${step} step failed with: ${cause})".toString())
        }
        return new StepFailure(cause)
    }

    /** The environment a step sees now; see the header for the order of the layers. */
    private Map<String, String> recExecEffectiveEnv() {
        Map<String, String> env = new LinkedHashMap<String, String>()
        ExecNode node = recCtx.node
        if (node != null) {
            env.putAll(node.processEnv)
            // Computer.buildEnvironment (global, then the node's properties), expanded over it.
            Map<String, String> properties = new LinkedHashMap<String, String>(recExec.globalEnv)
            properties.putAll(node.env)
            properties.each { k, v -> recExecOverride(env, k, recExecExpand(v, env)) }
        } else {
            recExec.globalEnv.each { k, v -> recExecOverride(env, k, v) }
        }
        env.putAll(recExecBuildVars)
        if (node != null) {
            env.WORKSPACE = recCtx.workspace.path
            env.WORKSPACE_TMP = recCtx.workspace.path + '@tmp'
            env.NODE_NAME = node.name
            env.NODE_LABELS = node.allLabels().join(' ')
            env.EXECUTOR_NUMBER = recCtx.executor.toString()
        }
        recCtx.overrides.each { List<String> o -> recExecOverride(env, o[0], o[1]) }
        return env
    }

    private Map recExecEnvView() {
        // env.X = 'v' sets a variable of the build (null unsets it).
        Closure set = { String key, Object value ->
            if (value == null) {
                recExecBuildVars.remove(key)
            } else {
                recExecBuildVars[key] = value.toString()
            }
        }
        return new ExecEnvView(recExecEffectiveEnv(), set)
    }

    /** EnvVars.override: an empty value unsets, NAME+SUFFIX prepends to NAME with ':'. */
    private static void recExecOverride(Map<String, String> env, String key, String value) {
        if (value == null || value.isEmpty()) {
            env.remove(key)
            return
        }
        int plus = key.indexOf('+')
        if (plus > 0) {
            String real = key.substring(0, plus)
            env[real] = env[real] == null ? value : value + ':' + env[real]
        } else {
            env[key] = value
        }
    }

    /** $NAME and ${NAME} of env; other text (and unknown names) left as they are. */
    private static String recExecExpand(String value, Map<String, String> env) {
        value.replaceAll(/\$\{([A-Za-z_][A-Za-z0-9_.]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/) { List<String> m ->
            String key = m[1] ?: m[2]
            env.containsKey(key) ? env[key] : m[0]
        }
    }

    private void recExecLog(Object text) {
        recConsole.line(String.valueOf(text), recCtx.secrets)
    }

    /** sh, run for real: see the header. Returns what the step returns (null: nothing). */
    private Object recExecSh(Frame f, String script, Map options) {
        recExecCheckTimeout()
        recExecLog('[Pipeline] sh')
        if (recCtx.node == null) {
            throw recExecNoNode(f, 'sh')
        }
        File cwd = recCtx.cwd
        cwd.mkdirs()
        String cookie = 'durable-' + UUID.randomUUID().toString().replace('-', '')
        File control = new File(cwd.parentFile, "${cwd.name}@tmp/${cookie.substring(0, 16)}")
        control.mkdirs()
        File scriptFile = new File(control, 'script.sh')
        scriptFile.setText(script, 'UTF-8')
        List<String> command
        if (script.startsWith('#!')) {
            scriptFile.setExecutable(true)
            command = [scriptFile.path]
        } else {
            command = ['/bin/sh', '-xe', scriptFile.path]
        }
        Map<String, String> env = recExecEffectiveEnv()
        env.JENKINS_SERVER_COOKIE = cookie
        File log = new File(control, 'jenkins-log.txt')
        File output = options.returnStdout ? new File(control, 'output.txt') : null
        List<String> secrets = new ArrayList<String>(recCtx.secrets)
        ExecProcess r = ExecProcess.run(command, cwd, env, log, output, recExecDeadline()) { String line ->
            recConsole.line(line, secrets)
        }
        String stdout = output?.exists() ? output.getText('UTF-8') : null
        Map result = [script: script, exit_code: r.exitCode, seconds: r.seconds]
        if (r.timedOut) {
            result.timed_out = true
        }
        f.owner.sh_results.add(result)
        control.deleteDir()
        if (r.timedOut) {
            recExecFireTimeouts()
            throw new StepTimeout()
        }
        if (options.returnStatus) {
            return r.exitCode
        }
        if (r.exitCode != 0) {
            throw new StepFailure("script returned exit code ${r.exitCode}".toString())
        }
        return options.returnStdout ? stdout : null
    }

    /** The other steps --exec runs for real; EXEC_NO_VALUE for those that only get recorded. */
    private Object recExecStep(Frame f, String name, Object[] args) {
        recExecCheckTimeout()
        recExecLog("[Pipeline] ${name}")
        if (name in EXEC_NEEDS_WORKSPACE && recCtx.node == null) {
            throw recExecNoNode(f, name)
        }
        Map options = args.length > 0 && args[0] instanceof Map ? (Map) args[0] : [:]
        Object first = args.length > 0 && !(args[0] instanceof Map) && !(args[0] instanceof Closure) ? args[0] : null
        File cwd = recCtx.cwd
        if (!(name in EXEC_KNOWN_STEPS)) {
            recNotSimulated.add("step ${name} in ${recWhere(f)}: recorded only, not run by --exec".toString())
        }
        switch (name) {
            case 'echo':
            case 'print':
            case 'println':
                recExecLog(args.length > 0 ? String.valueOf(options.message ?: first) : '')
                break
            case 'sleep':
                recExecSleep(options.time ?: first, options.unit ?: 'SECONDS')
                break
            case 'stash':
                recExecStash(options.name ?: first, options)
                break
            case 'unstash':
                recExecUnstash((options.name ?: first)?.toString())
                break
            case 'archiveArtifacts':
                recExecArchive(f, (options.artifacts ?: first)?.toString(), options)
                break
            case 'junit':
                recExecJunit(f, (options.testResults ?: first)?.toString(), options)
                break
            case 'recordCoverage':
                recExecCoverage(f, options)
                break
            case 'checkout':
                if (first instanceof Symbol && first.name == 'scm') {
                    recExecCheckout(null, cwd)
                } else {
                    recNotSimulated.add("checkout ${first ?: options} in ${recWhere(f)}: only checkout scm runs".toString())
                }
                break
            case 'deleteDir':
                cwd.deleteDir()
                break
            case 'writeFile':
                File target = recExecFile(options.file)
                target.parentFile.mkdirs()
                target.setText(String.valueOf(options.text), (options.encoding ?: 'UTF-8').toString())
                break
            case 'readFile':
                File source = recExecFile(options.file ?: first)
                if (!source.isFile()) {
                    throw new StepFailure("java.nio.file.NoSuchFileException: ${source.path}".toString())
                }
                return source.getText((options.encoding ?: 'UTF-8').toString())
            case 'fileExists':
                return recExecFile(options.file ?: first).exists()
            case 'pwd':
                return options.tmp ? "${cwd.path}@tmp".toString() : cwd.path
            case 'isUnix':
                return true
        }
        return EXEC_NO_VALUE
    }

    private File recExecFile(Object path) {
        if (!(path instanceof CharSequence)) {
            throw new StepFailure('a file step needs a file name')
        }
        path.toString().startsWith('/') ? new File(path.toString()) : new File(recCtx.cwd, path.toString())
    }

    private void recExecSleep(Object time, Object unit) {
        if (!(time instanceof Number)) {
            throw new StepFailure('sleep needs a time: sleep 5 or sleep(time: 5, unit: SECONDS)')
        }
        long end = System.currentTimeMillis() +
            java.util.concurrent.TimeUnit.valueOf(unit.toString()).toMillis(((Number) time).longValue())
        while (System.currentTimeMillis() < end) {
            Long deadline = recExecDeadline()
            long until = deadline == null ? end : Math.min(end, (long) deadline)
            Thread.sleep(Math.max(1L, until - System.currentTimeMillis()))
            recExecCheckTimeout()
        }
    }

    private void recExecStash(Object nameValue, Map options) {
        String name = nameValue?.toString()
        if (!name) {
            throw new StepFailure('stash needs a name')
        }
        boolean defaultExcludes = options.containsKey('useDefaultExcludes') ? options.useDefaultExcludes as boolean : true
        String includes = options.includes ? options.includes.toString() : '**'
        List<String> files = AntGlob.scan(recCtx.cwd, includes, options.excludes?.toString(), defaultExcludes)
        if (!files && !options.allowEmpty) {
            throw new StepFailure("No files included in stash \u2018${name}\u2019".toString())
        }
        File dir = recStashDirs[name]
        if (dir == null) {
            dir = new File(recExec.buildDir, "stashes/${recStashDirs.size() + 1}")
            recStashDirs[name] = dir
        }
        dir.deleteDir()
        recExecCopy(recCtx.cwd, files, dir)
        recStashes[name] = files
        recExecLog("Stashed ${files.size()} file(s)")
    }

    private void recExecUnstash(String name) {
        if (name == null || !recStashes.containsKey(name)) {
            throw new StepFailure("No such saved stash \u2018${name}\u2019".toString())
        }
        recExecCopy(recStashDirs[name], recStashes[name], recCtx.cwd)
    }

    private static void recExecCopy(File from, List<String> files, File to) {
        files.each { String rel ->
            File target = new File(to, rel)
            target.parentFile.mkdirs()
            java.nio.file.Files.copy(new File(from, rel).toPath(), target.toPath(),
                java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.COPY_ATTRIBUTES)
        }
    }

    private void recExecArchive(Frame f, String pattern, Map options) {
        if (!pattern) {
            throw new StepFailure('No artifacts are configured for archiving.\n' +
                'You probably forgot to set the file pattern, so please go back to the configuration and specify it.\n' +
                'If you really did mean to archive all the files in the workspace, please specify "**"')
        }
        boolean failing = recPostFailing || recBuildResult == 'FAILURE'
        if (options.onlyIfSuccessful && failing) {
            recExecLog('Skipped archiving because build is not successful')
            return
        }
        recExecLog('Archiving artifacts')
        boolean defaultExcludes = options.containsKey('defaultExcludes') ? options.defaultExcludes as boolean : true
        List<String> files = AntGlob.scan(recCtx.cwd, pattern, options.excludes?.toString(), defaultExcludes)
        if (!files) {
            String message = "No artifacts found that match the file pattern \"${pattern}\". Configuration error?"
            if (failing) {
                return  // ArtifactArchiver says nothing when the build already failed
            }
            if (!options.allowEmptyArchive) {
                throw new StepFailure(message)
            }
            recExecLog(message)
            return
        }
        recExecCopy(recCtx.cwd, files, new File(recExec.buildDir, 'archive'))
        recArchived.addAll(files)
    }

    private void recExecJunit(Frame f, String pattern, Map options) {
        if (!pattern) {
            throw new StepFailure('junit needs testResults')
        }
        recExecLog('Recording test results')
        List<String> files = AntGlob.scan(recCtx.cwd, pattern, null, true)
        Map summary = [
            stage: f.owner.is(recPipelineMap) ? null : f.owner.name, pattern: pattern, files: files,
            tests: 0, failures: 0, errors: 0, skipped: 0,
        ]
        if (!files) {
            if (!options.allowEmptyResults) {
                throw new StepFailure('No test report files were found. Configuration error?')
            }
            recExecLog('No test report files were found. Configuration error?')
        }
        files.each { String rel ->
            def report
            try {
                report = new XmlSlurper(false, false).parse(new File(recCtx.cwd, rel))
            } catch (Exception e) {
                throw new StepFailure("Failed to read test report file ${new File(recCtx.cwd, rel)}: ${e.message}".toString())
            }
            report.depthFirst().findAll { it.name() == 'testcase' }.each { testcase ->
                summary.tests++
                if (testcase.children().any { it.name() == 'failure' }) {
                    summary.failures++
                } else if (testcase.children().any { it.name() == 'error' }) {
                    summary.errors++
                } else if (testcase.children().any { it.name() == 'skipped' }) {
                    summary.skipped++
                }
            }
        }
        if (files && summary.tests == 0) {
            if (!options.allowEmptyResults) {
                throw new StepFailure('None of the test reports contained any result')
            }
            recExecLog('None of the test reports contained any result')
        }
        recJunit.add(summary)
        int failed = summary.failures + summary.errors
        if (failed > 0) {
            recNotSimulated.add(("junit in ${recWhere(f)}: ${failed} failed test(s) mark the build UNSTABLE " +
                'in Jenkins (not simulated: UNSTABLE)').toString())
        }
    }

    private void recExecCoverage(Frame f, Map options) {
        List tools = options.tools instanceof List ? (List) options.tools : []
        boolean found = false
        tools.each { tool ->
            Map t = tool instanceof Map ? (Map) tool : [:]
            String parser = t.parser?.toString()
            String pattern = t.pattern ? t.pattern.toString() : EXEC_COVERAGE_PATTERNS[parser]
            if (pattern == null) {
                recNotSimulated.add(("recordCoverage parser ${parser} without a pattern in ${recWhere(f)}: " +
                    'no default pattern known here').toString())
                return
            }
            List<String> files = AntGlob.scan(recCtx.cwd, pattern, null, true)
            found = found || !files.isEmpty()
            String stageName = f.owner.is(recPipelineMap) ? null : f.owner.name
            recCoverage.add([stage: stageName, parser: parser, pattern: pattern, files: files])
        }
        if (!found) {
            // The coverage plugin logs this as an error and goes on (unless failOnError).
            recExecLog('[Coverage] [-ERROR-] No coverage results were found! Configuration error?')
        }
    }

    // ---- the simulated build -----------------------------------------------------------------

    /** Runs the recorded pipeline as Jenkins would (after recording it): see the header. */
    void recSimulate() {
        if (recExec != null) {
            recExecSimulate()
            return
        }
        Map env = new LinkedHashMap(recBuildEnv)
        env.putAll(recPipelineMap.environment)
        recSimEnv = env
        StepFailure error = null
        recBodiesOf(recPipelineMap).children.each { Map stage ->
            StepFailure e = recSimStage(stage, error, null, env)
            error = error ?: e
        }
        recSimEnv = env
        recSimPost(recPipelineMap, null, false)
        recSimEnv = null
    }

    /**
     * Runs (or skips) one stage; returns its failure, or null. `env` is the environment around
     * it (the build's and the pipeline's, and its enclosing stages').
     */
    private StepFailure recSimStage(Map stage, StepFailure earlier, String skipReason, Map env) {
        Map bodies = recBodiesOf(stage)
        Map stageEnv = new LinkedHashMap(env)
        stageEnv.putAll(stage.environment)
        if (skipReason == null && earlier != null) {
            skipReason = 'failure'
        }
        if (skipReason == null && bodies.when != null) {
            // Jenkins evaluates when before the stage's own environment section.
            recSimEnv = env
            Boolean passed
            try {
                passed = recWhenAll(stage, bodies.when)
            } catch (StepFailure e) {
                stage.when_result = 'error'
                stage.status = 'failed'
                stage.error = e.message
                recBuildResult = 'FAILURE'
                bodies.children.each { recSimStage(it, null, 'failure', stageEnv) }
                return e
            }
            stage.when_result = passed == null ? 'unknown' : passed
            if (passed != null && !passed) {
                skipReason = 'when'
            }
        }
        if (skipReason != null) {
            stage.status = 'skipped'
            stage.skip_reason = skipReason
            bodies.children.each { recSimStage(it, null, skipReason, stageEnv) }
            return null
        }
        StepFailure error = null
        recSimEnv = stageEnv
        if (bodies.steps != null) {
            error = recExecCatching(bodies.steps, new Frame(kind: 'steps', owner: stage, exec: true))
        } else {
            // Sequential nested stages stop at a failure; parallel ones all start.
            bodies.children.each { Map child ->
                StepFailure e = recSimStage(child, bodies.parallel ? null : error, null, stageEnv)
                error = error ?: e
            }
            recSimEnv = stageEnv
        }
        error = recSimPost(stage, error, true)
        stage.status = error == null ? 'passed' : 'failed'
        stage.error = error?.message
        if (error != null) {
            recBuildResult = 'FAILURE'
        }
        return error
    }

    /** Runs the post conditions of a stage (or the pipeline) that apply; returns the failure. */
    private StepFailure recSimPost(Map owner, StepFailure error, boolean isStage) {
        Map posts = recBodiesOf(owner).post
        POST_ORDER.each { String condition ->
            Closure body = posts[condition]
            if (body != null && recPostApplies(condition, error, isStage)) {
                List ran = []
                owner.ran_post[condition] = ran
                Frame frame = new Frame(kind: 'steps', owner: owner, postSteps: ran, exec: true)
                // Declarative sets the build's result to the stage's while a condition runs.
                recPostFailing = error != null || recBuildResult == 'FAILURE'
                StepFailure e = recExecCatching(body, frame)
                recPostFailing = false
                if (e != null) {
                    recBuildResult = 'FAILURE'
                    error = error ?: e
                }
            }
        }
        return error
    }

    /** Jenkins' conditions, for a first build (no previous one) that is neither unstable nor aborted. */
    private boolean recPostApplies(String condition, StepFailure error, boolean isStage) {
        boolean failed = error != null
        boolean buildFailed = recBuildResult == 'FAILURE'
        if (condition in ['always', 'changed', 'cleanup']) {
            return true
        } else if (condition == 'failure') {
            return failed || buildFailed
        } else if (condition == 'success') {
            // In a stage of a build that already failed, success means this stage did not fail.
            return !failed && (isStage || !buildFailed)
        } else if (condition == 'unsuccessful') {
            return failed || buildFailed
        }
        return false  // fixed, regression, aborted, unstable, notBuilt
    }

    private StepFailure recExecCatching(Closure body, Frame frame) {
        try {
            recRun(body, frame)
            return null
        } catch (StepFailure e) {
            return e
        }
    }

    // A when condition is true, false or null (cannot be known here); a block of them is allOf.
    // Like Jenkins, evaluation stops at the first false one; an expression that fails throws.
    private Boolean recWhenAll(Map stage, List nodes) {
        boolean unknown = false
        for (Object node : nodes) {
            Boolean value = recWhenValue(stage, (Map) node)
            if (value == null) {
                unknown = true
            } else if (!value) {
                return false
            }
        }
        return unknown ? null : true
    }

    private Boolean recWhenValue(Map stage, Map node) {
        String name = node.name
        if (name == 'buildingTag') {
            return recTagName != null
        } else if (name == 'tag') {
            return recTagMatches((Object[]) node.args)
        } else if (name == 'allOf') {
            return recWhenAll(stage, node.children)
        } else if (name == 'anyOf') {
            boolean unknown = false
            for (Object child : node.children) {
                Boolean value = recWhenValue(stage, (Map) child)
                if (value == null) {
                    unknown = true
                } else if (value) {
                    return true
                }
            }
            return unknown ? null : false
        } else if (name == 'not') {
            Boolean value = recWhenAll(stage, node.children)
            return value == null ? null : !value
        } else if (name == 'expression') {
            return recExpression(stage, (Closure) ((Object[]) node.args)[0])
        }
        return null
    }

    /** Runs a when expression's body in the simulated build; an error in it fails the stage. */
    private boolean recExpression(Map stage, Closure body) {
        Object value
        try {
            value = recRun(body, new Frame(kind: 'expression', owner: stage, exec: true))
        } catch (StepFailure e) {
            throw new StepFailure("when expression failed: ${e.message}".toString())
        }
        return value as boolean
    }

    /** tag 'v*', tag pattern: '...', comparator: 'GLOB' | 'REGEXP' | 'EQUALS'. */
    private Boolean recTagMatches(Object[] args) {
        if (recTagName == null) {
            return false
        }
        Map options = args.length > 0 && args[0] instanceof Map ? (Map) args[0] : [:]
        def pattern = options ? options.pattern : (args.length > 0 ? args[0] : null)
        if (!pattern) {
            return true
        }
        String comparator = options.comparator?.toString() ?: 'GLOB'
        if (comparator == 'EQUALS') {
            return recTagName == pattern.toString()
        } else if (comparator == 'REGEXP') {
            return recTagName ==~ pattern.toString()
        }
        // Ant-style glob: ** any characters, * and ? within one path segment.
        String regex = pattern.toString().split(/\*\*/, -1).collect { String part ->
            part.split(/\*/, -1).collect { String piece ->
                piece.split(/\?/, -1).collect { java.util.regex.Pattern.quote(it) }.join('[^/]')
            }.join('[^/]*')
        }.join('.*')
        return recTagName ==~ regex
    }
}

/** Base class of the compiled Jenkinsfile: names it does not define go to the Recorder. */
abstract class JenkinsfileScript extends Script {
    private Recorder recorder

    void attachRecorder__(Recorder r) {
        recorder = r
    }

    def methodMissing(String name, Object args) { recorder.methodMissing(name, args) }

    def propertyMissing(String name) { recorder.propertyMissing(name) }

    def propertyMissing(String name, Object value) { recorder.propertyMissing(name, value) }
}

String usage = 'usage: groovy jenkins_dsl_stub.groovy [--fail REGEX | --exec CONFIG.json] [--tag NAME] ' +
    '[--env KEY=VALUE]... path/to/Jenkinsfile'
Map cli = [:]
Map buildEnv = [:]
List positional = []
for (int i = 0; i < args.length; i++) {
    if (args[i] in ['--fail', '--tag', '--env', '--exec']) {
        if (i + 1 >= args.length || (args[i] != '--env' && args[i] in cli)) {
            System.err.println(usage)
            System.exit(64)
        }
        String option = args[i]
        String value = args[i + 1]
        if (option == '--env') {
            def pair = value =~ /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/
            if (!pair.matches() || buildEnv.containsKey(pair.group(1))) {
                System.err.println("--env ${value}: expected KEY=VALUE, each KEY once\n${usage}")
                System.exit(64)
            }
            buildEnv[pair.group(1)] = pair.group(2)
        } else {
            cli[option] = value
        }
        i++
    } else {
        positional.add(args[i])
    }
}
if (cli['--tag'] != null && buildEnv.containsKey('TAG_NAME')) {
    System.err.println("--tag NAME sets TAG_NAME: give it or --env TAG_NAME=..., not both\n${usage}")
    System.exit(64)
}
if (positional.size() != 1) {
    System.err.println(usage)
    System.exit(64)
}
java.util.regex.Pattern failPattern = null
if (cli['--fail'] != null) {
    try {
        failPattern = java.util.regex.Pattern.compile(cli['--fail'])
    } catch (java.util.regex.PatternSyntaxException e) {
        System.err.println("--fail: not a regular expression: ${e.message}")
        System.exit(64)
    }
}
ExecConfig execConfig = null
if (cli['--exec'] != null) {
    if (failPattern != null) {
        System.err.println("--fail makes sh steps fail in a simulated build; with --exec they run for real: not both\n${usage}")
        System.exit(64)
    }
    try {
        execConfig = ExecConfig.load(new File(cli['--exec']))
    } catch (ExecConfig.ConfigError e) {
        System.err.println("${e.message}\n(--exec CONFIG.json: see the header of jenkins_dsl_stub.groovy)")
        System.exit(64)
    }
    Closure inConfig = { String key -> execConfig.buildEnv.containsKey(key) || execConfig.params.containsKey(key) }
    def twice = buildEnv.keySet().findAll { inConfig(it) } +
        (cli['--tag'] != null && inConfig('TAG_NAME') ? ['TAG_NAME'] : [])
    if (twice) {
        System.err.println("--env/--tag set ${twice.join(', ')}, which the config's build_env or params set too\n${usage}")
        System.exit(64)
    }
}
File jenkinsfile = new File(positional[0])
if (!jenkinsfile.isFile()) {
    System.err.println("not a file: ${jenkinsfile}")
    System.exit(64)
}

PrintStream json = System.out
System.setOut(System.err)

def config = new CompilerConfiguration()
config.scriptBaseClass = JenkinsfileScript.name
config.addCompilationCustomizers(new ShadowedStepRenamer())
def shell = new GroovyShell(this.class.classLoader, new Binding(), config)
int status = 0
Map recorded = null
try {
    Script script = shell.parse(jenkinsfile.getText('UTF-8'), StubError.sourceName)
    def recorder = new Recorder(script, failPattern, cli['--tag'], buildEnv, execConfig)
    script.attachRecorder__(recorder)
    script.run()
    if (recorder.recPipelineMap == null) {
        throw new StubError('no pipeline { } block')
    }
    recorder.recSimulate()
    recorded = recorder.recResult()
} catch (CompilationFailedException e) {
    System.err.println("${jenkinsfile}: does not compile:\n${e.message}")
    status = 2
} catch (StubError e) {
    System.err.println("${jenkinsfile}: not a declarative pipeline: ${e.message}")
    status = 3
} catch (Throwable e) {
    System.err.println("${jenkinsfile}: evaluation failed${StubError.where(e)}: ${e}")
    status = 4
}
if (status != 0) {
    System.exit(status)
}
json.println(JsonOutput.prettyPrint(JsonOutput.toJson(recorded)))
json.flush()
