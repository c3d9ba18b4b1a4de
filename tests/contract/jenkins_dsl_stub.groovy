// A recording stub of Jenkins' declarative pipeline DSL, for tests/contract/test_jenkinsfile.py.
//
//     groovy tests/contract/jenkins_dsl_stub.groovy [--fail REGEX] [--tag NAME] [--env KEY=VALUE]...
//         path/to/Jenkinsfile
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
// (pipeline post, environment values).
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
// Whatever the Jenkinsfile prints goes to stderr: stdout carries the JSON only.
//
// Exit status: 0 JSON printed; 2 the Jenkinsfile does not compile; 3 its structure is not a
// declarative pipeline (unknown or repeated section, a stage without steps, two DSL calls
// chained on one line, ...); 4 another error while evaluating it; 64 usage (an --env without
// KEY=, a KEY given twice, --env TAG_NAME=... together with --tag, ...).

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
    Set sections = [] as Set
}

/** A step that fails in the simulated build: it ends its stage (or post condition). */
class StepFailure extends RuntimeException {
    StepFailure(String message) {
        super(message)
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
    ]
    static final List AGENT_TYPES = ['docker', 'dockerfile', 'node', 'kubernetes']
    // The order Jenkins runs post conditions in, whatever the order they are written in.
    static final List POST_ORDER = [
        'always', 'changed', 'fixed', 'regression', 'aborted', 'failure', 'success', 'unstable',
        'unsuccessful', 'notBuilt', 'cleanup',
    ]
    static final List NOT_SIMULATED_BLOCKS = ['catchError', 'warnError']

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

    Recorder(Script script, java.util.regex.Pattern failPattern = null, String tagName = null,
             Map buildEnv = [:]) {
        this.recScript = script
        this.recFailPattern = failPattern
        this.recTagName = tagName
        this.recBuildEnv = new LinkedHashMap(buildEnv)
        if (tagName != null) {
            this.recBuildEnv.TAG_NAME = tagName
        }
        recGlobals.env.putAll(recBuildEnv)
        recFrames.add(new Frame(kind: 'root'))
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
            case 'when': return recWhen(f, name, args)
            case 'steps': return recStep(f, name, args)
            case 'expression': return recStep(f, name, args)
            case 'environment': return recStep(new Frame(kind: 'steps', owner: f.owner), name, args)
            default: return recDirective(f, name, args)
        }
    }

    def propertyMissing(String name) {
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
        if (f.kind == 'expression') {
            // Jenkins resolves a bare name to an environment variable, or fails.
            if (recSimEnv.containsKey(name)) {
                return recSimEnv[name]
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
        if (f.kind == 'environment') {
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
        recPipelineMap = recNewOwner([:])
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
            recordedIn.add(f.owner.options)
        }
        args.findAll { it instanceof Closure }.each { recRun((Closure) it, f) }
        return new ChainGuard(name, recordedIn)
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
            if (f.exec && recFailPattern != null && recFailPattern.matcher(script).find()) {
                if (!options.returnStatus) {
                    throw new StepFailure("sh '${script}' failed")
                }
                result = 1
            }
        } else {
            recordedIn = recStepName(f, name)
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
        if (name == 'retry') {
            def count = args.length > 0 && args[0] instanceof Map ? args[0].count : args[0]
            int attempts = count instanceof Number ? Math.max(1, ((Number) count).intValue()) : 1
            for (int attempt = 1; ; attempt++) {
                try {
                    bodies.each { recRun(it, inner) }
                    return
                } catch (StepFailure e) {
                    if (attempt >= attempts) {
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

    /** buildDiscarder(logRotator(...)): logRotator is an argument, not an option of its own. */
    private void recUnrecord(Object[] args) {
        def nested = args.toList() + args.findAll { it instanceof Map }.collectMany { it.values() as List }
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
            bodies = [steps: null, children: [], parallel: false, when: null, post: [:]]
            recBodies.put(owner, bodies)
        }
        return bodies
    }

    private String recWhere(Frame f) {
        f.owner.is(recPipelineMap) ? 'the pipeline' : "stage '${f.owner.name}'".toString()
    }

    private boolean recIsScriptMethod(String name) {
        !(name in ['run', 'main']) && recScript.getClass().declaredMethods.any { !it.synthetic && it.name == name }
    }

    private static String recDescribe(Frame f) {
        f.owner?.name ? "${f.kind} of stage '${f.owner.name}'" : (f.kind == 'root' ? 'the top level' : f.kind)
    }

    Map recResult() {
        recPipelineMap + [
            result: recBuildResult,
            simulation: [
                fail: recFailPattern?.pattern(), tag: recTagName,
                env: recBuildEnv.findAll { it.key != 'TAG_NAME' || recTagName == null },
            ],
            not_simulated: recNotSimulated,
            stages: recStages,
        ]
    }

    // ---- the simulated build -----------------------------------------------------------------

    /** Runs the recorded pipeline as Jenkins would (after recording it): see the header. */
    void recSimulate() {
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
                StepFailure e = recExecCatching(body, frame)
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

String usage = 'usage: groovy jenkins_dsl_stub.groovy [--fail REGEX] [--tag NAME] [--env KEY=VALUE]... path/to/Jenkinsfile'
Map cli = [:]
Map buildEnv = [:]
List positional = []
for (int i = 0; i < args.length; i++) {
    if (args[i] in ['--fail', '--tag', '--env']) {
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
    def recorder = new Recorder(script, failPattern, cli['--tag'], buildEnv)
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
