/** A page of a paginated AWS list call. */
export interface Page {
  readonly NextToken?: string;
}

/** Every item of a paginated call: `fetch` is called with each page's NextToken until there is none. */
export async function allPages<P extends Page, T>(
  fetch: (nextToken: string | undefined) => Promise<P>, items: (page: P) => T[] | undefined,
): Promise<T[]> {
  const out: T[] = [];
  let next: string | undefined;
  do {
    const page = await fetch(next);
    out.push(...(items(page) ?? []));
    next = page.NextToken;
  } while (next);
  return out;
}
