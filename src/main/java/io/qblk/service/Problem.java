package io.qblk.service;

import com.fasterxml.jackson.annotation.JsonInclude;
import java.util.List;

/** An RFC 9457 problem details body ({@code application/problem+json}). */
@JsonInclude(JsonInclude.Include.NON_EMPTY)
@io.quarkus.runtime.annotations.RegisterForReflection
public record Problem(String type, String title, int status, String detail, String instance,
                      List<ApiException.FieldError> errors) {
    public static final String MEDIA_TYPE = "application/problem+json";
}
