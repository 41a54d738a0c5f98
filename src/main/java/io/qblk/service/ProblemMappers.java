package io.qblk.service;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException;
import com.fasterxml.jackson.databind.exc.MismatchedInputException;
import io.qblk.io.ErrnoException;
import io.qblk.io.ImageLock;
import jakarta.ws.rs.WebApplicationException;
import jakarta.ws.rs.core.Response;
import jakarta.ws.rs.core.UriInfo;
import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.NoSuchFileException;
import java.util.List;
import java.util.stream.Collectors;
import org.jboss.logging.Logger;
import org.jboss.resteasy.reactive.server.ServerExceptionMapper;

/** Every error leaves the API as {@code application/problem+json} with a precise detail, never a stack trace. */
public class ProblemMappers {
    private static final Logger LOG = Logger.getLogger(ProblemMappers.class);

    static Response problem(int status, String title, String detail, String instance, List<ApiException.FieldError> errors) {
        String type = "https://qblk.io/problems/" + title.toLowerCase(java.util.Locale.ROOT).replaceAll("[^a-z0-9]+", "-");
        return Response.status(status).type(Problem.MEDIA_TYPE)
                .entity(new Problem(type, title, status, detail, instance, errors)).build();
    }

    private static String path(UriInfo uri) {
        return uri == null ? null : "/" + uri.getPath().replaceFirst("^/", "");
    }

    @ServerExceptionMapper
    public Response api(ApiException e, UriInfo uri) {
        return problem(e.status(), e.title(), e.detail(), path(uri), e.errors());
    }

    @ServerExceptionMapper
    public Response json(JsonProcessingException e, UriInfo uri) {
        String detail;
        if (e instanceof UnrecognizedPropertyException u) {
            detail = "unknown field '" + u.getPropertyName() + "'";
        } else if (e instanceof MismatchedInputException m && !m.getPath().isEmpty()) {
            String field = m.getPath().stream().map(r -> r.getFieldName() != null ? r.getFieldName() : "[" + r.getIndex() + "]")
                    .collect(Collectors.joining("."));
            String wanted = m.getTargetType() == null ? "another type" : m.getTargetType().getSimpleName();
            return problem(400, "Invalid request", field + ": wrong type (expected " + wanted + ")", path(uri),
                    List.of(new ApiException.FieldError(field, "wrong type (expected " + wanted + ")")));
        } else {
            detail = "malformed JSON: " + e.getOriginalMessage();
        }
        return problem(400, "Bad Request", detail, path(uri), List.of());
    }

    /** More specific than Quarkus' built-in mapper, which answers with an empty body. */
    @ServerExceptionMapper
    public Response mismatched(MismatchedInputException e, UriInfo uri) {
        return json(e, uri);
    }

    @ServerExceptionMapper
    public Response web(WebApplicationException e, UriInfo uri) {
        int status = e.getResponse().getStatus();
        if (e.getCause() instanceof JsonProcessingException j) return json(j, uri);
        String title = Response.Status.fromStatusCode(status) == null ? "Error" : Response.Status.fromStatusCode(status).getReasonPhrase();
        String detail = switch (status) {
            case 404 -> "no such resource: " + path(uri);
            case 405 -> "method not allowed on " + path(uri);
            case 415 -> "unsupported media type: send application/json";
            case 406 -> "not acceptable: this API produces application/json";
            case 413 -> "request body too large";
            default -> e.getMessage();
        };
        return problem(status, title, detail, path(uri), List.of());
    }

    @ServerExceptionMapper
    public Response io(IOException e, UriInfo uri) {
        ApiException a = ApiException.fromIo(e, 500, "I/O error");
        if (a.status() == 500 && !(e instanceof ErrnoException)) LOG.warnf("%s: %s", path(uri), DeviceManager.message(e));
        return api(a, uri);
    }

    @ServerExceptionMapper
    public Response unexpected(RuntimeException e, UriInfo uri) {
        if (e instanceof ApiException a) return api(a, uri);
        if (e instanceof WebApplicationException w) return web(w, uri);
        LOG.errorf(e, "%s: unexpected error", path(uri));
        return problem(500, "Internal Server Error", e.getClass().getSimpleName() + ": " + DeviceManager.message(e), path(uri), List.of());
    }
}
