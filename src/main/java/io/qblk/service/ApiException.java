package io.qblk.service;

import io.qblk.io.Errno;
import io.qblk.io.ImageLock;
import io.qblk.io.ErrnoException;
import io.qblk.qcow2.Qcow2Exception;
import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.NoSuchFileException;
import java.util.List;

/**
 * A refusal with an HTTP status and a precise detail; rendered as RFC 9457 problem+json by
 * {@link ProblemMappers}. Services throw it; resources stay thin.
 */
public class ApiException extends RuntimeException {
    private final int status;
    private final String title;
    private final List<FieldError> errors;

    public record FieldError(String field, String message) {}

    public ApiException(int status, String title, String detail) {
        this(status, title, detail, List.of());
    }

    public ApiException(int status, String title, String detail, List<FieldError> errors) {
        super(detail);
        this.status = status;
        this.title = title;
        this.errors = List.copyOf(errors);
    }

    public int status() { return status; }
    public String title() { return title; }
    public String detail() { return getMessage(); }
    public List<FieldError> errors() { return errors; }

    public static ApiException badRequest(String detail) { return new ApiException(400, "Bad Request", detail); }
    public static ApiException invalid(List<FieldError> errors) {
        String detail = errors.size() == 1 ? errors.getFirst().field() + ": " + errors.getFirst().message()
                : errors.size() + " invalid fields: " + String.join("; ", errors.stream().map(e -> e.field() + ": " + e.message()).toList());
        return new ApiException(400, "Invalid request", detail, errors);
    }
    public static ApiException forbidden(String detail) { return new ApiException(403, "Forbidden", detail); }
    public static ApiException notFound(String detail) { return new ApiException(404, "Not Found", detail); }
    public static ApiException conflict(String detail) { return new ApiException(409, "Conflict", detail); }
    public static ApiException unprocessable(String detail) { return new ApiException(422, "Unprocessable image", detail); }
    public static ApiException unavailable(String detail) { return new ApiException(503, "Service Unavailable", detail); }

    /**
     * An image or file error as every endpoint reports it, the status following the error's kind:
     * a qcow2 {@link Qcow2Exception.Kind} (corrupt, unsupported, not qcow2, limit, missing or refused backing
     * file: 422; invalid argument: 400; read-only: 409), or an errno
     * (ENOSPC: 507, EFBIG: 422, EROFS: 409, EACCES/EPERM: 403), or {@code otherwise}'s status.
     */
    public static ApiException fromIo(IOException e, int otherwise, String otherwiseTitle) {
        String detail = message(e);
        if (e instanceof Qcow2Exception q) {
            return switch (q.kind()) {
                case CORRUPT, UNSUPPORTED, NOT_QCOW2, LIMIT, BACKING_MISSING, BACKING_REFUSED -> unprocessable(detail);
                case INVALID_ARGUMENT -> badRequest(detail);
                case READ_ONLY -> conflict(detail);
                case NOT_FOUND -> notFound(detail);
            };
        }
        if (e instanceof ImageLock.InUseException) return conflict(detail); // names the file and its holder
        if (e instanceof NoSuchFileException n) return notFound((n.getFile() == null ? detail : n.getFile()) + ": no such file");
        if (e instanceof FileAlreadyExistsException f) return conflict(f.getFile() + ": already exists");
        if (e instanceof AccessDeniedException a) return forbidden(a.getFile() + ": permission denied");
        if (e instanceof ErrnoException ee) {
            switch (ee.errno()) {
                case Errno.ENOSPC: return new ApiException(507, "Insufficient Storage", detail);
                case Errno.EFBIG: return new ApiException(422, "Unprocessable", detail);
                case Errno.EROFS: return conflict(detail);
                case Errno.EACCES, Errno.EPERM: return forbidden(detail);
                default: break;
            }
        }
        return new ApiException(otherwise, otherwiseTitle, detail);
    }

    static String message(Throwable e) {
        String m = e.getMessage();
        return m == null || m.isBlank() ? e.getClass().getSimpleName() : m;
    }
}
