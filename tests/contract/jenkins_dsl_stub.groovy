// A recording stub of Jenkins' declarative pipeline DSL, for tests/contract/test_jenkinsfile.py.
//
//     groovy tests/contract/jenkins_dsl_stub.groovy path/to/Jenkinsfile
//
// It evaluates the Jenkinsfile as Groovy. Every DSL call reaches a Recorder through
// methodMissing / propertyMissing (closures run with the Recorder as delegate, DELEGATE_FIRST),
// so steps need not be listed one by one; the Recorder only knows the declarative structure
// (pipeline, stages, stage, steps, post, when, agent, environment, options, ...). It prints on
// stdout a JSON description of what it saw:
//
//     {"agent": "any", "agent_label": null, "options": [...], "environment": {...},
//      "sh": [...], "steps": [...], "post": {"always": ["archiveArtifacts"]},
//      "stages": [{"name": "Train", "parent": null, "agent": "label", "agent_label": "gpu",
//                  "when": false, "when_conditions": [], "sh": ["bash .ci/bootstrap", ...],
//                  "steps": ["stash"], "post": {}, "environment": {}, "options": []}, ...]}
//
// "sh" holds the scripts of the sh steps and "steps" the names of all other steps, in order,
// both including steps nested in block steps (lock, timeout, script, ...) and in post; "post"
// maps each post condition to the names of its steps (sh included). Pipeline-level "sh" and
// "steps" hold what runs outside any stage (pipeline post, environment values).
//
// Whatever the Jenkinsfile prints goes to stderr: stdout carries the JSON only.
//
// Exit status: 0 JSON printed; 2 the Jenkinsfile does not compile; 3 its structure is not a
// declarative pipeline (unknown or repeated section, a stage without steps, two DSL calls
// chained on one line, ...); 4 another error while evaluating it; 64 usage.

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
    String kind          // root, pipeline, stages, stage, agent, when, post, steps, environment, options, directive
    Map owner            // the stage (or the pipeline) that steps in this frame belong to
    List postSteps       // inside post { <condition> { ... } }: that condition's step names
    Map parentStage      // in a stages / parallel block nested in a stage: that stage
    Set sections = [] as Set
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

    Recorder(Script script) {
        this.recScript = script
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
            case 'environment': return recStep(new Frame(kind: 'steps', owner: f.owner), name, args)
            default: return recDirective(f, name, args)
        }
    }

    def propertyMissing(String name) {
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
        } else if (f.kind in ['steps', 'directive']) {
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
            int before = recStages.size()
            recRun(recBlock(name, args), new Frame(kind: 'stages', owner: target, parentStage: parent))
            if (recStages.size() == before) {
                throw new StubError("no stage in the ${name} section of ${where}")
            }
        } else if (name != 'failFast') {
            if (name == 'when') {
                target.when = true
            }
            String kind = SECTION_FRAMES[name] ?: 'directive'
            recRun(recBlock(name, args), new Frame(kind: kind, owner: target))
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
        stage.putAll([when: false, when_conditions: []])
        recStages.add(stage)
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
        if (name in WHEN_NESTING) {
            recRun(recBlock(name, args), f)
        }
        // expression { ... } is Groovy Jenkins evaluates at run time: recorded, not run.
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
        recRun(recBlock(name, args), new Frame(kind: 'steps', owner: f.owner, postSteps: names))
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
            f.owner.sh.add(text.toString())
            if (f.postSteps != null) {
                f.postSteps.add(name)
            }
            result = options.returnStdout ? '' : options.returnStatus ? 0 : null
        } else {
            recordedIn = recStepName(f, name)
        }
        // Block steps (lock, timeout, dir, script, ...) and parallel's branches run in place.
        args.each { arg ->
            if (arg instanceof Closure) {
                recRun((Closure) arg, new Frame(kind: 'steps', owner: f.owner, postSteps: f.postSteps))
            } else if (arg instanceof Map) {
                arg.values().findAll { it instanceof Closure }.each {
                    recRun((Closure) it, new Frame(kind: 'steps', owner: f.owner, postSteps: f.postSteps))
                }
            }
        }
        return result != null ? result : new ChainGuard(name, recordedIn)
    }

    // ---- helpers -----------------------------------------------------------------------------

    private List<List> recStepName(Frame f, String name) {
        List<List> lists = [f.owner.steps]
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

    private void recRun(Closure body, Frame frame) {
        recFrames.add(frame)
        try {
            Closure c = body.rehydrate(this, body.owner, body.thisObject)
            c.resolveStrategy = Closure.DELEGATE_FIRST
            c.call()
        } finally {
            recFrames.removeLast()
        }
    }

    private Map recNewOwner(Map head) {
        head + [
            agent: null, agent_label: null, sh: [], steps: [], post: [:], environment: [:],
            options: [],
        ]
    }

    private boolean recIsScriptMethod(String name) {
        !(name in ['run', 'main']) && recScript.getClass().declaredMethods.any { !it.synthetic && it.name == name }
    }

    private static String recDescribe(Frame f) {
        f.owner?.name ? "${f.kind} of stage '${f.owner.name}'" : (f.kind == 'root' ? 'the top level' : f.kind)
    }

    Map recResult() {
        recPipelineMap + [stages: recStages]
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

if (args.length != 1) {
    System.err.println('usage: groovy jenkins_dsl_stub.groovy path/to/Jenkinsfile')
    System.exit(64)
}
File jenkinsfile = new File(args[0])
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
    def recorder = new Recorder(script)
    script.attachRecorder__(recorder)
    script.run()
    if (recorder.recPipelineMap == null) {
        throw new StubError('no pipeline { } block')
    }
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
