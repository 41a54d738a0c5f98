package io.qblk.service;

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
}
