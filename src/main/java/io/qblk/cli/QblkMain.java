package io.qblk.cli;

import io.quarkus.runtime.Quarkus;
import io.quarkus.runtime.QuarkusApplication;
import io.quarkus.runtime.annotations.QuarkusMain;
import jakarta.inject.Inject;
import picocli.CommandLine;

/**
 * Entry point. One-shot commands run without the HTTP server (so they work while a service runs);
 * only {@code serve} starts it.
 */
@QuarkusMain
public class QblkMain implements QuarkusApplication {
    public static final String HTTP_ENABLED = "quarkus.http.host-enabled";

    /**
     * Carrier threads of the virtual-thread scheduler. Engine and NBD requests run on virtual threads
     * and their file I/O (pread/pwrite/fdatasync through FFM, O_DIRECT in cache mode none) blocks the
     * carrier for the whole call: the JDK does not add carriers around foreign calls. With the default
     * (one carrier per CPU) a 2-CPU machine keeps only 2 such calls in flight whatever the queue
     * depth; 32 carriers let depth-32 work reach the disk (bench/engine-vs-qemu, preallocated
     * random write at depth 32 with -t none: 1.46 s with 2 carriers, 0.40 s with 32; qemu 0.42 s).
     * ublk queues submit through io_uring and do not pin carriers. -D on the command line wins.
     */
    static final String CARRIERS = "jdk.virtualThreadScheduler.parallelism";
    static final int DEFAULT_CARRIERS = 32;

    @Inject
    CommandLine.IFactory factory;

    public static void main(String... args) {
        // Before anything creates a virtual thread: the scheduler reads it once, when first used.
        if (System.getProperty(CARRIERS) == null) {
            System.setProperty(CARRIERS, String.valueOf(Math.max(DEFAULT_CARRIERS, Runtime.getRuntime().availableProcessors())));
        }
        // ./mvnw quarkus:dev passes "serve" too (argsString in pom.xml).
        boolean serve = args.length > 0 && args[0].equals("serve");
        boolean disabled = !serve && System.getProperty(HTTP_ENABLED) == null;
        if (disabled) System.setProperty(HTTP_ENABLED, "false");
        try {
            Quarkus.run(QblkMain.class, args);
        } finally {
            // @QuarkusMainTest calls main in the test JVM: don't leak the setting into later tests.
            if (disabled) System.clearProperty(HTTP_ENABLED);
        }
    }

    @Override
    public int run(String... args) {
        return commandLine(factory).execute(args);
    }

    /** The picocli tree with qblk's error handling: one clear line for bad input, never a stack trace. */
    public static CommandLine commandLine(CommandLine.IFactory factory) {
        CommandLine cl = new CommandLine(QblkCommand.class, factory);
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            cmd.getErr().println("qblk: " + CliErrors.message(ex));
            cmd.getErr().flush();
            return CliErrors.exitCode(ex);
        });
        cl.setParameterExceptionHandler((ex, args) -> {
            CommandLine cmd = ex.getCommandLine();
            String name = cmd.getCommandSpec().qualifiedName();
            cmd.getErr().println(name + ": " + CliErrors.message(ex) + " (see '" + name + " --help')");
            cmd.getErr().flush();
            return 1;
        });
        return cl;
    }
}
