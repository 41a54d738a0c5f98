package io.qblk.cli;

import java.io.UncheckedIOException;
import java.lang.reflect.InvocationTargetException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.NoSuchFileException;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;

/** Turns exceptions into the one-line messages and exit codes the CLI promises. */
public final class CliErrors {
    private CliErrors() {}

    public static String message(Throwable t) {
        t = unwrap(t);
        if (t instanceof NoSuchFileException e) return e.getFile() + ": no such file";
        if (t instanceof FileAlreadyExistsException e) return e.getFile() + ": already exists";
        if (t instanceof AccessDeniedException e) return e.getFile() + ": permission denied";
        if (t instanceof OutOfMemoryError) return "out of memory";
        String m = t.getMessage();
        if (m == null || m.isBlank()) return t.getClass().getSimpleName();
        return m.lines().findFirst().orElse(m);
    }

    /** Strips wrappers that carry no message of their own. */
    public static Throwable unwrap(Throwable t) {
        while (t.getCause() != null && (t instanceof UncheckedIOException || t instanceof ExecutionException
                || t instanceof CompletionException || t instanceof InvocationTargetException
                || (t instanceof RuntimeException && t.getClass() == RuntimeException.class && t.getMessage() != null
                    && t.getMessage().equals(t.getCause().toString())))) {
            t = t.getCause();
        }
        return t;
    }

    public static int exitCode(Throwable t) {
        return 1;
    }
}
