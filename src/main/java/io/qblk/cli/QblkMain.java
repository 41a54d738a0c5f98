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

    @Inject
    CommandLine.IFactory factory;

    public static void main(String... args) {
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
